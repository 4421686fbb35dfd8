"""Tab completion of ``distill``: Hydra's, taught the stage word.

``distill -sc install=bash`` (or ``distill train -sc install=bash``; zsh and fish alike) prints
Hydra's script for the command ``distill``. On each TAB the script's function runs
``distill -sc query=SHELL`` with the line typed so far in ``COMP_LINE``: the first word is completed
from the stages here, and the rest by Hydra's query of that stage's config (groups, their options,
keys) on the line without the stage word.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

# Completed as the first word, besides the stages.
_COMMANDS = ("models", "--help", "--version")
# Completed for a word starting with '-' after a stage.
_FLAGS = ("--help", "--hydra-help", "--cfg", "--info", "--multirun", "--resolve", "-m")
SHELLS = ("bash", "zsh", "fish")


def _request(args: list[str]) -> tuple[str, str]:
    """``("install" | "uninstall" | "query", shell)`` from the arguments after ``-sc``."""
    from distill.errors import UserError, closest

    given = [a for a in args if not a.startswith("-")]
    what, _, shell = (given[0] if given else "").partition("=")
    if what not in ("install", "uninstall", "query") or shell not in SHELLS:
        raise UserError(
            f"-sc takes install=SHELL, uninstall=SHELL or query=SHELL with SHELL one of {', '.join(SHELLS)}"
            f'{closest(shell, SHELLS) if shell else ""}, e.g. eval "$(distill -sc install=bash)"'
        )
    return what, shell


def _typed() -> tuple[list[str], str]:
    """The words typed after ``distill`` before the cursor, and the word being completed ('' for a new one)."""
    line = os.environ.get("COMP_LINE", "")
    point = os.environ.get("COMP_POINT", "")
    if point.isdigit():
        line = line[: int(point)]
    words = line.split()[1:]
    if not line or line[-1].isspace():
        return words, ""
    return words[:-1], words[-1] if words else ""


def shell_completion(args: list[str], hydra_app: Callable[[str], Callable[[], None]]) -> None:
    """Answers ``distill [STAGE] -sc ...``: Hydra's install script for ``distill``, or the candidates
    for the line in ``COMP_LINE``. ``hydra_app(stage)`` is the stage's Hydra entry point, which
    does what ``sys.argv`` asks.

    Raises:
        UserError: ``-sc`` without install=, uninstall= or query= and a known shell.
    """
    from distill.stage_names import STAGES

    what, shell = _request(args)
    separator = "\n" if shell == "fish" else " "
    if what != "query":
        sys.argv = ["distill", "-sc", f"{what}={shell}"]  # Hydra names the command after argv[0]
        hydra_app("train")()
        return
    done, word = _typed()
    if not done:
        print(separator.join(w for w in (*STAGES, *_COMMANDS) if w.startswith(word)))
        return
    stage = done[0]
    if stage not in STAGES:
        return
    if word.startswith("-"):
        print(separator.join(f for f in _FLAGS if f.startswith(word)))
        return
    # Hydra strips the first word as the program's name: the line goes on without the stage word.
    os.environ["COMP_LINE"] = " ".join(["distill", *done[1:], word])  # ends with a space for a new word
    os.environ.pop("COMP_POINT", None)
    sys.argv = ["distill", "-sc", f"query={shell}"]
    hydra_app(stage)()
