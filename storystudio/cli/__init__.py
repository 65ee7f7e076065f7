"""The ``storystudio`` command: the desktop app, and the same engine headless.

    storystudio [PROJECT]                 start the app
    storystudio render INPUT [options]    generate a story's panels without a window
                                          (and lay them out as a PDF or CBZ comic)
    storystudio export PROJECT [options]  export a saved project's pages or animatic, without generating
    storystudio models ...                list, download, import, remove, locate and create models
    storystudio install-desktop           add the menu entry and the .storystudio file type (Linux; and
                                          uninstall-desktop), see desktop.py

One module per subcommand (``render``, ``export``, ``models``) over a small
common base (``base``), as diffusers' ``commands/`` package does: each one
checks its own options before any work. User mistakes end with one plain
sentence on stderr and exit code 2, never a traceback; Ctrl+C at any moment
ends with exit code 130 and one line.

Only the standard library is imported here at first, and the program takes
Ctrl+C over as soon as this module is imported: a Ctrl+C during the first
imports, or while the interpreter shuts down, ends with one line too; in the
interpreter's very last step, after every exit handler, it is ignored. (Only
the interpreter's own start, before any StoryStudio code runs, is Python's.)
"""

from __future__ import annotations

import os
import sys

try:  # the C module: importing ``signal`` itself takes milliseconds, too long to wait with Ctrl+C untaken
    import _signal as _csignal
except ImportError:  # pragma: no cover - not CPython
    import signal as _csignal

__all__ = ["EXIT_CANCELLED", "EXIT_USER", "build_parser", "main"]

EXIT_USER = 2
EXIT_CANCELLED = 130
SUBCOMMANDS = ("render", "export", "models")

_main_running = False
_closing_line_said = False  # the run's one closing line is out: a later Ctrl+C adds no second one


def _on_interrupt(signum, frame) -> None:
    """Ctrl+C: before ``main`` runs (the program is still importing) stop at once with one line; then the
    running command's handling once it is set up, else stop where it is."""
    if not _main_running:
        _stop_at_once()
    base = sys.modules.get(f"{__name__}.base")
    interrupts = getattr(base, "interrupts", None)  # None while base itself is still being imported
    if interrupts is None:
        raise KeyboardInterrupt
    interrupts.handler(signum, frame)


def _stop_at_once() -> None:
    """Stop the program now with one line (nothing is being written: it is starting, or shutting down)."""
    try:
        sys.stdout.flush()
        if not _closing_line_said:
            sys.stderr.write(("\n" if sys.stderr.isatty() else "") + "storystudio: stopped.\n")
            sys.stderr.flush()
    finally:
        os._exit(EXIT_CANCELLED)


# Imported by the storystudio program itself (its console script or bundle, or ``python -m storystudio.cli``),
# this module takes Ctrl+C over at once, so that even the first imports end with one line. Imported by
# other programs (the tests), it leaves their Ctrl+C alone until main() is called.
if __name__ == "__main__" or os.path.basename(sys.argv[0] if sys.argv else "").split(".")[0] in (
        "storystudio", "storystudio-cli"):
    try:
        _csignal.signal(_csignal.SIGINT, _on_interrupt)
    except ValueError:  # imported on another thread than the main one: signals are not ours to take
        pass
    else:
        import atexit

        # The interpreter's last step puts Python-level signal handlers back to the default, which a late
        # Ctrl+C would meet as a bare kill. Registered first, this runs after every other exit handler:
        # from there on nothing is left to stop, so Ctrl+C is ignored (an ignored signal stays ignored).
        atexit.register(_csignal.signal, _csignal.SIGINT, _csignal.SIG_IGN)

import signal  # noqa: E402  (after the takeover: every import before it is time without it)
import threading  # noqa: E402


def build_parser():
    from .. import __version__
    from .base import Parser
    from .export import ExportCommand
    from .models import ModelsCommand
    from .render import RenderCommand

    root = Parser(prog="storystudio", description="Comics with the same characters in every panel.")
    root.add_argument("--version", action="version", version=f"StoryStudio {__version__}")
    sub = root.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}", parser_class=Parser)
    for command in (RenderCommand, ExportCommand, ModelsCommand):
        command.register(sub).set_defaults(command_class=command)
    return root


def main(argv: list[str] | None = None) -> int:
    """Run ``storystudio`` with ``argv`` (the process's own arguments when None) and return its exit code.

    Called without ``argv`` (as the console script is), it owns the process: a Ctrl+C during the last
    moments of exiting (once main has returned) ends it at once with code 130 and one line instead of
    a traceback from the interpreter's shutdown. Called with ``argv`` (tests, other programs), it puts
    the previous Ctrl+C handler back.
    """
    global _main_running
    own_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    on_main = threading.current_thread() is threading.main_thread()
    _main_running = True
    previous = signal.signal(signal.SIGINT, _on_interrupt) if on_main else None
    try:
        try:
            code = _run(argv)
        except KeyboardInterrupt:
            code = _say_last("storystudio: stopped.", EXIT_CANCELLED)
    finally:
        _main_running = False
        if on_main:
            signal.signal(signal.SIGINT, _on_interrupt if own_process else previous)
    return code


def _run(argv: list[str]) -> int:
    from .base import Stopped, UserError, interrupts

    interrupts.reset()
    try:
        return _dispatch(argv)
    except UserError as exc:
        return _say_last(f"storystudio: {exc}", EXIT_USER)
    except Stopped as exc:
        return _say_last(f"storystudio: {exc}" if str(exc) else "storystudio: stopped.", EXIT_CANCELLED)


def _say_last(line: str, code: int) -> int:
    """The one closing line on stderr; a Ctrl+C meanwhile must not turn it into a traceback."""
    global _closing_line_said
    ignored = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGINT, signal.SIG_IGN) if ignored else None
    try:
        if sys.stderr.isatty():
            print(file=sys.stderr)  # end a progress line drawn in place
        print(line, file=sys.stderr, flush=True)
        _closing_line_said = True
    finally:
        if ignored:
            signal.signal(signal.SIGINT, before)
    return code


def _dispatch(argv: list[str]) -> int:
    from .base import UserError

    if argv and argv[0] in ("install-desktop", "uninstall-desktop"):
        from ..desktop import main as desktop_main

        return desktop_main(argv)
    if not argv or (argv[0] not in SUBCOMMANDS and not argv[0].startswith("-")):
        return _start_app(argv)
    args = build_parser().parse_args(argv)
    if getattr(args, "command_class", None) is None:
        raise UserError("say what to do: render, export or models (storystudio --help lists them).")
    command = args.command_class(args)
    command.check()
    return command.run()


def _start_app(argv: list[str]) -> int:
    if len(argv) > 1:
        return _say_last("storystudio: give at most one project to open. See storystudio --help.", EXIT_USER)
    from ..ui.app import run_app

    return run_app(argv[0] if argv else None)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
