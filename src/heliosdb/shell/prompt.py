"""The prompt as a state machine: session state in, prompt fragments out.

    heliosdb[main]=>               normal
    heliosdb[main]@node-2=>        the branch lives on a non-default node (more than one node exists)
    heliosdb[main@LSN:0/1A3F]=>    a temporal context is set (SET AS OF ...)
    heliosdb[main]*=>              inside a transaction
    heliosdb[main]!=>              inside a failed transaction
    heliosdb[main]->               continuation line (add * or ! as above)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from heliosdb.session import Session


class Tx(enum.Enum):
    IDLE = ""
    OPEN = "*"
    FAILED = "!"


@dataclass(frozen=True)
class PromptState:
    database: str
    branch: str
    tx: Tx = Tx.IDLE
    as_of_lsn: int | None = None
    node: str | None = None  # shown only when the cluster has more than one storage node


def short_lsn(lsn: int) -> str:
    """X/X hex, no leading zeros in either half (PostgreSQL's pg_lsn text form)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def state_of(session: Session, multi_node: bool = False) -> PromptState:
    tx = Tx.FAILED if session.transaction_failed else Tx.OPEN if session.in_transaction else Tx.IDLE
    ctx = session.as_of
    branch = ctx.branch.name if ctx is not None else session.branch.name
    node = session.branch.storage_node if multi_node else None
    return PromptState(session.database, branch, tx, ctx.lsn if ctx is not None else None, node)


Fragments = list[tuple[str, str]]


def fragments(state: PromptState, continuation: bool = False) -> Fragments:
    """The prompt as (style class, text) pieces; join the texts for the plain prompt."""
    out: Fragments = [("class:prompt.db", state.database), ("class:prompt", "[")]
    out.append(("class:prompt.branch", state.branch))
    if state.as_of_lsn is not None:
        out.append(("class:prompt.asof", f"@LSN:{short_lsn(state.as_of_lsn)}"))
    out.append(("class:prompt", "]"))
    if state.node:
        out.append(("class:prompt.node", f"@{state.node}"))
    if state.tx is Tx.OPEN:
        out.append(("class:prompt.tx", "*"))
    elif state.tx is Tx.FAILED:
        out.append(("class:prompt.failed", "!"))
    out.append(("class:prompt", "-> " if continuation else "=> "))
    return out


def text(state: PromptState, continuation: bool = False) -> str:
    return "".join(t for _, t in fragments(state, continuation))


STYLE = {
    "prompt": "",
    "prompt.db": "ansigreen bold",
    "prompt.branch": "ansicyan bold",
    "prompt.asof": "ansimagenta bold",
    "prompt.node": "ansiblue",
    "prompt.tx": "ansiyellow bold",
    "prompt.failed": "ansired bold",
}
