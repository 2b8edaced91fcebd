"""``GET /v1/files/header``: ``eseutil /mh`` of a store file the service may serve (service/paths.py), for a
client that cannot read the file itself (over TCP). The answer carries the lines and the JSON document the
command prints, so the output is the same either way."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from shadowstore.service.api.deps import host_of
from shadowstore.service.paths import confine

router = APIRouter(prefix="/v1", tags=["files"])


@router.get("/files/header", summary="A store file's header as eseutil /mh shows it")
def header(request: Request, path: Annotated[str, Query(min_length=1, max_length=4096)]) -> dict[str, Any]:
    from shadowstore.cli.eseutil_layout import database_json, database_lines, exit_code, report_json
    from shadowstore.tools.eseutil import dump_database

    real = confine(host_of(request).owned(), path)
    report = dump_database(real)
    return {
        "lines": database_lines(report),
        "json": report_json(report, database_json(report)),
        "exit_code": exit_code(report),
        "errors": [e.to_dict() for e in report.errors],
    }
