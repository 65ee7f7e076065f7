#!/usr/bin/env bash
# Build the Linux bundle from this tree in a fresh environment, unpack its archive somewhere else, and use it
# as a person would, with every Python on the machine hidden and no network:
#   --version; the window (offscreen) with the example story and its icon; a tiny model made by the bundle;
#   `render` of the bundled example with a PDF and an MP4; install-desktop into a temporary XDG folder,
#   the .storystudio type and its default program as a file manager asks for them, a "double-click" on a
#   project through xdg-open; uninstall-desktop.
#
#   packaging/smoke_test.sh [build.py options]      e.g. --torch-spec torch==2.13.0 --torch-index pypi
#   SKIP_BUILD=1 packaging/smoke_test.sh            test the archive already in dist/
#
# Not part of the pytest run (the build takes many minutes); packaging/README.md records its results.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [[ -z "${SKIP_BUILD:-}" ]]; then
  python3 packaging/build.py "$@"
fi
archive=$(ls dist/storystudio-*-linux-*.tar.gz)
T=$(mktemp -d /tmp/storystudio-smoke.XXXXXX)
echo "== unpacking $archive into $T"
tar -xzf "$archive" -C "$T"
APP="$T/storystudio/storystudio"
DATA="$T/storystudio/_internal/storystudio/resources"
mkdir -p "$T/home"

# a project to double-click, written by the build environment's Python before the Pythons are hidden
build/bundle-venv/bin/python - "$T/Double-clicked.storystudio" <<'EOF'
import sys
from storystudio.project.fileio import save_project
from storystudio.project.model import Project
save_project(Project.example(), sys.argv[1])
EOF

# Hide every Python (pyenv's and Debian's) and the network for what follows: a new mount and network
# namespace, tmpfs over the Python folders. The bundle must bring all it needs.
cat > "$T/isolated" <<EOF
#!/bin/sh
for d in /root/.pyenv /usr/lib/python3 /usr/lib/python3.11 /usr/local/lib/python3.11; do
  [ -d "\$d" ] && mount -t tmpfs none "\$d"
done
for f in /usr/bin/python3 /usr/bin/python3.11; do
  [ -e "\$f" ] && mount --bind /dev/null "\$f"
done
exec env -i HOME="$T/home" PATH=/usr/bin:/bin XDG_DATA_HOME="$T/home/.local/share" \
  XDG_CONFIG_HOME="$T/home/.config" XDG_DATA_DIRS="$T/home/.local/share:/usr/share" \
  QT_QPA_PLATFORM=offscreen LANG=C.UTF-8 "\$@"
EOF
chmod +x "$T/isolated"
run() { unshare --mount --net "$T/isolated" "$@"; }

fail() { echo "SMOKE TEST FAILED: $*" >&2; exit 1; }

echo "== no Python, no network in the sandbox"
run sh -c 'python3 -c 1 2>/dev/null && exit 1; ls /root/.pyenv | wc -l' | grep -qx 0 || fail "a Python is visible"

echo "== --version"
run "$APP" --version | tee "$T/version.txt"
grep -qx "StoryStudio $(sed -n 's/^__version__ = "\(.*\)"/\1/p' storystudio/__init__.py)" "$T/version.txt" \
  || fail "--version"

echo "== the window (offscreen), with the example story and the icon; the worker's torch/diffusers warm-up"
run env STORYSTUDIO_SMOKE_TEST=1 "$APP" > "$T/window.txt" 2> "$T/window.err" || fail "window: $(cat "$T/window.err")"
cat "$T/window.txt"
grep -q "StoryStudio window: 'Lighthouse - StoryStudio', 8 panels, icon sizes \[16, 24, 32, 48, 64, 128, 256, 512\]" \
  "$T/window.txt" || fail "the window did not open with the example and its icon"
grep -qx "StoryStudio worker: ready" "$T/window.txt" || fail "the worker did not import torch/diffusers"
! grep -q Traceback "$T/window.err" || fail "window: $(cat "$T/window.err")"

echo "== a tiny model, made by the bundle"
run "$APP" models create-tiny "$T/tiny-sdxl" --arch sdxl

echo "== render the bundled example headless, with a PDF and an MP4"
time run "$APP" render "$DATA/examples/lighthouse.story.txt" --model "$T/tiny-sdxl" --out "$T/out" \
  --steps 2 --size 128x128 --pdf "$T/comic.pdf" --mp4 "$T/animatic.mp4" --video-size 1280x720 --fps 12
[[ $(ls "$T"/out/*.png | wc -l) -eq 8 ]] || fail "render wrote $(ls "$T"/out/*.png | wc -l) PNGs, not 8"
[[ -s "$T/out/manifest.json" && -s "$T/comic.pdf" && -s "$T/animatic.mp4" ]] || fail "render outputs"
head -c 5 "$T/comic.pdf" | grep -q %PDF || fail "comic.pdf is no PDF"

echo "== install-desktop into the sandbox's XDG folders; what a file manager asks"
run "$APP" install-desktop
entry="$T/home/.local/share/applications/storystudio.desktop"
grep -qx "Exec=$APP %f" "$entry" || fail "Exec is not the bundle's program: $(grep ^Exec "$entry")"
if command -v desktop-file-validate >/dev/null; then
  desktop-file-validate "$entry" || fail "desktop-file-validate"
fi
if command -v xdg-mime >/dev/null; then
  type=$(run xdg-mime query filetype "$T/Double-clicked.storystudio")
  default=$(run xdg-mime query default application/x-storystudio)
  echo "filetype: $type; default: $default"
  [[ $type == application/x-storystudio && $default == storystudio.desktop ]] || fail "MIME registration"
  echo "== double-click: xdg-open on the project starts the bundle with it"
  # xdg-open looks up the default program only "with a display"; Qt stays offscreen all the same
  run env DISPLAY=:0 STORYSTUDIO_SMOKE_TEST=1 xdg-open "$T/Double-clicked.storystudio" > "$T/open.txt" 2>&1 || true
  for _ in $(seq 60); do grep -q "StoryStudio window" "$T/open.txt" && break; sleep 1; done
  cat "$T/open.txt"
  # the title names the story, then the file: 'Lighthouse — Double-clicked.storystudio - StoryStudio'
  grep -q "StoryStudio window: '.*Double-clicked.storystudio - StoryStudio'" "$T/open.txt" || fail "double-click did not open it"
fi
run "$APP" uninstall-desktop
[[ ! -e "$entry" ]] || fail "uninstall-desktop left the entry"

echo "== sizes"
du -sh "$T/storystudio" "$archive"
rm -rf "$T"
echo "SMOKE TEST PASSED"
