; Inno Setup script for the Windows installer of StoryStudio (Inno Setup 6).
; Build the bundle first on Windows (python packaging\build.py), then:
;     iscc /DAppVersion=0.1.0 packaging\windows\storystudio.iss
; It installs dist\StoryStudio\ for the current user (no administrator rights needed), adds a Start menu
; entry, and registers the .storystudio file type, so a double-click opens the project in StoryStudio.
; Not built here: StoryStudio's build machine runs Linux (see packaging/README.md).

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif

[Setup]
AppId={{6C3E2A57-2B7B-4E0C-9B1F-53C0A7A3D0F1}
AppName=StoryStudio
AppVersion={#AppVersion}
AppPublisher=StoryStudio
DefaultDirName={autopf}\StoryStudio
DefaultGroupName=StoryStudio
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ChangesAssociations=yes
OutputDir=..\..\dist
OutputBaseFilename=storystudio-{#AppVersion}-windows-x86_64-setup
SetupIconFile=..\..\build\icons\storystudio.ico
UninstallDisplayIcon={app}\StoryStudio.exe
Compression=lzma2/max
SolidCompression=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
WizardStyle=modern

[Files]
Source: "..\..\dist\StoryStudio\*"; DestDir: "{app}"; Flags: recursesubdirs createallsubdirs ignoreversion

[Icons]
Name: "{group}\StoryStudio"; Filename: "{app}\StoryStudio.exe"
Name: "{autodesktop}\StoryStudio"; Filename: "{app}\StoryStudio.exe"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Registry]
; the file type: .storystudio -> StoryStudio.Project -> "StoryStudio.exe" "%1"
Root: HKA; Subkey: "Software\Classes\.storystudio"; ValueType: string; ValueName: ""; ValueData: "StoryStudio.Project"; Flags: uninsdeletevalue
Root: HKA; Subkey: "Software\Classes\.storystudio"; ValueType: string; ValueName: "Content Type"; ValueData: "application/x-storystudio"; Flags: uninsdeletevalue
Root: HKA; Subkey: "Software\Classes\StoryStudio.Project"; ValueType: string; ValueName: ""; ValueData: "StoryStudio project"; Flags: uninsdeletekey
Root: HKA; Subkey: "Software\Classes\StoryStudio.Project\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: "{app}\StoryStudio.exe,0"
Root: HKA; Subkey: "Software\Classes\StoryStudio.Project\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\StoryStudio.exe"" ""%1"""
Root: HKA; Subkey: "Software\Classes\Applications\StoryStudio.exe\SupportedTypes"; ValueType: string; ValueName: ".storystudio"; ValueData: ""; Flags: uninsdeletekey

[Run]
Filename: "{app}\StoryStudio.exe"; Description: "{cm:LaunchProgram,StoryStudio}"; Flags: nowait postinstall skipifsilent
