"""`hnnwb gust ...` commands (registered by `workbench.cli.build_parser`)."""

from __future__ import annotations

import argparse

from workbench.cli import _group


def register(sub: argparse._SubParsersAction) -> None:
    _group(sub, "gust", "gust (commands being added)")
