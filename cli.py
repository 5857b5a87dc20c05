"""What every command line shares: bad input is an InputError, reported as one line naming the file or
value and ending in exit code 2, never a traceback; the argument parser reports its own errors that way,
and the flag checks name the flag a bad value came from."""
import argparse
import functools
import sys
import tempfile
from pathlib import Path


class InputError(Exception):
    """Bad input from the user: reported as one line naming the file or value, exit code 2."""


class Parser(argparse.ArgumentParser):
    """Every script's argument parser: a bad argument (`--latent x`) is bad input like any other, so it
    raises InputError and ends, through exit_on_input_error, in one line and exit code 2."""

    def error(self, message):
        raise InputError(message)


def exit_on_input_error(main):
    """Wrap a script's main() so that bad input ends in one clear line and exit code 2, no traceback."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except InputError as e:
            print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
            sys.exit(2)
    return wrapper


def flag(name):
    """The command-line flag of a setting: batch_size -> --batch-size."""
    return "--" + name.replace("_", "-")


def check_value(name, value, valid, rule):
    """One validity rule, reported as its command-line flag: `--layers 9: must be 2 to 5 ...`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not valid(value):
        raise InputError(f"{flag(name)} {value!r}: must be {rule}")


def check_choice(name, value, choices):
    """A named variant, reported as its flag: `--upsample 'cubic': choose transpose, nearest or bilinear`."""
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"{flag(name)} {value!r}: choose {', '.join(choices[:-1])} or {choices[-1]}"
                         if len(choices) > 1 else f"{flag(name)} {value!r}: must be {choices[0]}")


def check_flag(name, value):
    """An on/off option, reported as its flag: `--decoder-noise 'yes': must be true or false`."""
    if not isinstance(value, bool):
        raise InputError(f"{flag(name)} {value!r}: must be true or false")


def check_at_least(values):
    """{flag: (value, least)}: the first value below its least (None: not given) is InputError."""
    for name, (value, least) in values.items():
        if value is not None and value < least:
            raise InputError(f"{name} {value}: must be at least {least}")


def check_writable_folder(folder, name):
    """Make `folder` (and its parents) and prove a file can be written there, else InputError naming
    `name` (the flag it came from): before any work is done, not after."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{name} {folder}: is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        raise InputError(f"{name} {folder}: cannot write there ({e.strerror or type(e).__name__})") from None
