"""The unified assessment (pure): the packaged Questionnaire, and answers checked against it
and turned into a QuestionnaireResponse."""

import json
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from typing import Any

RECENT_DAYS = 90  # a completed assessment this recent is reused, not repeated


@cache
def questionnaire() -> dict[str, Any]:
    document = files("coordination") / "data" / "unified_assessment.json"
    loaded: dict[str, Any] = json.loads(document.read_text(encoding="utf-8"))
    return loaded


def canonical() -> str:
    q = questionnaire()
    return f"{q['url']}|{q['version']}"


class AnswerError(ValueError):
    """Answers that do not fit the Questionnaire (the message names the item)."""


def _answer(item: Mapping[str, Any], value: object) -> dict[str, Any]:
    kind = item["type"]
    link = item["linkId"]
    if kind in ("string", "text"):
        if not isinstance(value, str) or not value.strip():
            raise AnswerError(f"'{link}' needs some text")
        if len(value) > 10_000:
            raise AnswerError(f"'{link}' is longer than 10,000 characters")
        return {"valueString": value.strip()}
    if kind == "boolean":
        if not isinstance(value, bool):
            raise AnswerError(f"'{link}' is yes or no (true or false)")
        return {"valueBoolean": value}
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1000:
            raise AnswerError(f"'{link}' is a whole number from 0")
        return {"valueInteger": value}
    if kind == "choice":
        for option in item.get("answerOption") or ():
            coding = option["valueCoding"]
            if value == coding["code"]:
                return {"valueCoding": dict(coding)}
        codes = ", ".join(o["valueCoding"]["code"] for o in item.get("answerOption") or ())
        raise AnswerError(f"'{link}' is one of: {codes}")
    raise AnswerError(f"'{link}' has a type this server does not take ({kind})")


def response_resource(
    answers: Mapping[str, object],
    *,
    patient_id: str,
    author: str | None,
    authored: str,
) -> dict[str, Any]:
    """A completed QuestionnaireResponse, or ``AnswerError`` naming the first bad answer."""
    items = {i["linkId"]: i for i in questionnaire()["item"]}
    unknown = sorted(set(answers) - set(items))
    if unknown:
        raise AnswerError(f"'{unknown[0]}' is not a question of the unified assessment")
    missing = [link for link, item in items.items() if item.get("required") and link not in answers]
    if missing:
        raise AnswerError(f"'{missing[0]}' must be answered")
    response: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": canonical(),
        "status": "completed",
        "subject": {"reference": f"Patient/{patient_id}"},
        "authored": authored,
        "item": [
            {"linkId": link, "text": item["text"], "answer": [_answer(item, answers[link])]}
            for link, item in items.items()
            if link in answers and answers[link] is not None
        ],
    }
    if author:
        response["author"] = {"reference": author}
    return response


def is_unified(response: Mapping[str, Any]) -> bool:
    url = str(questionnaire()["url"])
    return str(response.get("questionnaire") or "").split("|")[0] == url
