"""How a command reaches the server: the shared options and the client they make.

`--api-url`/`--api-key` can be given before the subcommand (for every command) or to
one command; the command's own value wins, then the SDK's discovery applies
(environment, credentials file, default URL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sandlot.sdk import Sandlot

ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--api-url", help="Server URL.", show_default="$SANDLOT_API_URL, then credentials file"
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key", help="API key.", show_default="$SANDLOT_API_KEY, then credentials file"
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print the API's JSON data instead of text.")]


@dataclass(frozen=True)
class GlobalOptions:
    api_url: str | None = None
    api_key: str | None = None


def open_client(ctx: typer.Context, api_url: str | None, api_key: str | None) -> Sandlot:
    from sandlot.sdk import Sandlot

    given = ctx.find_object(GlobalOptions) or GlobalOptions()
    return Sandlot(api_url or given.api_url, api_key or given.api_key)
