"""The `rwpipe` command: registers one typer command per DVC stage.

Stage modules import only light libraries at module level, so `rwpipe --help` and
`rwpipe <stage> --help` work without torch or vllm.
"""

import errno
import sys

import typer
from rich.text import Text

from rwpipe.errors import RwpipeError
from stages.annotate import annotate
from stages.critiques import critiques
from stages.eval import evaluate
from stages.inputs import inputs, rl_rewards
from stages.model import model
from stages.pairs import pairs
from stages.prepare import prepare
from stages.probe import probe
from stages.report import console
from stages.rl import rl
from stages.rollout import rollout
from stages.score import score
from stages.search import search
from stages.train import train_prm, train_rm

app = typer.Typer(
    name="rwpipe",
    help=(
        "Reward-model research pipeline: model, prepare, rollout, annotate, train, rl, search, "
        "eval."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(inputs)
app.command()(model)
app.command()(prepare)
app.command()(rollout)
app.command()(annotate)
app.command()(pairs)
app.command()(critiques)
app.command("train-rm")(train_rm)
app.command("train-prm")(train_prm)
app.command()(score)
app.command("rl-rewards")(rl_rewards)
app.command()(rl)
app.command()(probe)
app.command()(search)
app.command("eval")(evaluate)


def main() -> None:
    """Console entry point: known errors become one line on stderr and exit code 1.

    Typer's standalone mode handles usage errors (exit 2) and Ctrl-C itself and lets every
    other exception through; rwpipe's own errors are caught here, anything else is a bug and
    keeps its traceback.
    """
    try:
        app()
    except RwpipeError as exc:
        _fail(str(exc))
    except OSError as exc:
        # the machine, not the code: a full disk, a quota, a read-only or forbidden path
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc} (nothing was replaced: the previous outputs stand)")


def _fail(text: str) -> None:
    # One line, no markup parsing: messages quote user data that may contain "[...]".
    message = Text.assemble(("error: ", "bold red"), " ".join(text.split()))
    console.print(message, soft_wrap=True, highlight=False)
    sys.exit(1)


if __name__ == "__main__":
    main()
