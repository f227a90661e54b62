"""Process entry shared by the suite's CLIs: one place that maps errors to exit codes."""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence

from modelops.errors import EXIT_BUG, EXIT_INTERRUPTED, SuiteError

Handler = Callable[[argparse.Namespace], int | None]


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """``--help`` with each option's default shown once: appended as ``(default: X)`` unless the
    help text already names it (``%(default)s`` or a hand-written "(default: ...)"), and never
    for a default that says nothing (``None``, ``False``, an empty string)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "(default" in text or "%(default)" in text or default is argparse.SUPPRESS \
                or default in (None, False, "") or isinstance(action, argparse._HelpAction):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)"
        return text


def _escape(text: str, *, prop: bool = False) -> str:
    """A workflow command's data (or property) as GitHub's runner unescapes it."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def annotation(exc: SuiteError, prog: str) -> str:
    """The ``::error`` workflow command for ``exc`` in GitHub Actions: on the file (and line)
    the error names, so a bad ``params.yaml`` is marked on that file in the pull request."""
    file = getattr(exc, "file", None)
    line = None
    head = re.match(r"([^\s:][^:\n]*?\.(?:ya?ml|json|lock)): (?:line (\d+)\b)?", exc.message)
    if head:
        file = file or head.group(1)
        line = head.group(2)
    found = re.search(r"\bline (\d+)\b", exc.message) if file and line is None else None
    line = line or (found.group(1) if found else None)
    props = [f"title={_escape(prog, prop=True)}"]
    if file:
        props.insert(0, f"file={_escape(str(file), prop=True)}")
        if line:
            props.insert(1, f"line={line}")
    return f"::error {','.join(props)}::{_escape(str(exc))}"


# A command's objects live until it exits: DVC's index, stages and parsed YAML are hundreds of
# thousands of long-lived objects, and with Python's default first-generation threshold (700
# allocations) the cyclic collector scans them about 560 times in one `modelops-ci evaluate`
# (0.33 s of its 2.3 s). Collecting every 20,000 allocations keeps garbage cycles bounded and
# costs 0.1 s there. At exit the objects still alive are frozen: the interpreter's final
# collections then skip them (0.28 s -> 0.04 s); atexit handlers and finalizers run as before.
SHORT_LIVED_GC_THRESHOLD = (20_000, 20, 20)


def run_main(build_parser: Callable[[], argparse.ArgumentParser],
             argv: Sequence[str] | None = None, *, prog: str, short_lived: bool = True) -> int:
    """Parse ``argv``, run the chosen subcommand's handler and return its exit code.

    Each subparser sets ``handler`` with ``set_defaults(handler=...)``. A :class:`SuiteError`
    prints ``<prog>: error: <message>`` without traceback; anything else is a bug (exit 3).

    A command run as a process (``argv`` from ``sys.argv``) that ends when its work is done
    (``short_lived``; not a server) tunes the cyclic garbage collector for that:
    :data:`SHORT_LIVED_GC_THRESHOLD` while it runs, the survivors frozen when it returns.
    """
    process = argv is None and short_lived
    if process:
        gc.set_threshold(*SHORT_LIVED_GC_THRESHOLD)
    try:
        return _run(build_parser, argv, prog)
    finally:
        if process:
            gc.freeze()


def _run(build_parser: Callable[[], argparse.ArgumentParser], argv: Sequence[str] | None,
         prog: str) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        code = handler(args)
    except SuiteError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        if os.environ.get("GITHUB_ACTIONS") == "true" and exc.exit_code != 1:
            print(annotation(exc, prog), file=sys.stderr)  # on the file, in the PR's diff
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:  # a bug: show everything
        traceback.print_exc()
        print(f"{prog}: internal error (a bug): please report it with the traceback above",
              file=sys.stderr)
        return EXIT_BUG
    return int(code or 0)
