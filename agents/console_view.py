"""Text rendering of the test console's report (``leadstreams try``)."""

from __future__ import annotations

from typing import Any

import orjson
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

COLOURS = {"success": "green", "failure": "yellow", "error": "red", "skip": "blue"}


def print_report(report: dict[str, Any], console: Console) -> None:
    for step in report["steps"]:
        console.print(Panel(_step_body(step), title=_step_title(step), title_align="left"))
    outcome = report["outcome"]
    console.print(
        Text.assemble(
            "lead outcome: ",
            (outcome, COLOURS[outcome]),
            f" ({report['reason']})" if report["reason"] else "",
        )
    )
    console.print(_code(report["lead"]))


def _step_title(step: dict[str, Any]) -> Text:
    outcome = step["outcome"]
    parts = [f"{step['name']}: ", (outcome, f"bold {COLOURS[outcome]}")]
    if step["reason"]:
        parts.append(f" — {step['reason']}")
    parts.append(f"  [{step['duration_ms']:.1f} ms")
    if step["http_status"] is not None:
        parts.append(f", HTTP {step['http_status']}, {step['attempts']} request(s)")
    parts.append("]")
    return Text.assemble(*parts)


def _step_body(step: dict[str, Any]) -> Any:
    from rich.console import Group

    items: list[Any] = []
    request = step.get("request")
    if request:
        items.append(Text(f"→ {request['method']} {request['url']}", style="bold"))
        items.extend(Text(f"  {name}: {value}") for name, value in request["headers"].items())
        if request["body"]:
            items.append(_code(request["body"]))
        if request.get("sent_compressed"):
            items.append(Text(f"  (the body above was sent compressed: {request['sent_compressed']})"))
    response = step.get("response")
    if response:
        items.append(Text(f"← {response['status']} in {response['elapsed_ms']} ms", style="bold"))
        items.extend(Text(f"  {name}: {value}") for name, value in (response.get("headers") or {}).items())
        if response["body"]:
            items.append(_code(response["body"]))
    if "parsed" in step:
        items.append(Text("parsed:", style="bold"))
        items.append(_code(step["parsed"]))
    for key in ("mapped", "price", "reference"):
        if step.get(key) is not None:
            items.append(Text(f"{key}:", style="bold"))
            items.append(_code(step[key]))
    if step.get("notification") == "sent":
        items.append(Text("(a notify step: sent here and now; a worker writes the lead without waiting "
                          "and delivers the notification apart)", style="italic"))  # fmt: skip
    return Group(*items) if items else Text("(no request sent)")


def _code(value: Any) -> Syntax | Text:
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            lexer = "xml" if value.lstrip().startswith("<") else "text"
            return Syntax(value, lexer, word_wrap=True)
    return Syntax(
        orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode(), "json", word_wrap=True
    )
