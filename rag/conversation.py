"""Follow-up questions → one standalone question that retrieval can answer on its own.

With a language model the last message is rewritten (prompt ``prompts/rewrite_system.txt``).
Without one, a deterministic rule: an elliptical follow-up ("e la Juventus?", "what about
Milan?", "invece il Napoli?") is appended to the last full question the user asked, so
"Quali club vogliono Ancelotti?" + "e la Juventus?" → "Quali club vogliono Ancelotti? Juventus".
Anything else is returned unchanged.
"""

from __future__ import annotations

import re

# connectives that open an elliptical follow-up, longest first
_LEADS = (
    "what about", "how about", "and what about", "e invece", "ed invece", "e per", "e su",
    "invece", "anche", "and", "e", "ed",
)
# words dropped at the start of the remaining fragment ("e la Juventus?" → "Juventus")
_DROP = {
    "il", "lo", "la", "i", "gli", "le", "l", "un", "una", "uno", "del", "dello", "della", "dei",
    "degli", "delle", "per", "su", "sul", "sullo", "sulla", "sui", "sugli", "sulle", "di", "a",
    "al", "allo", "alla", "ai", "agli", "alle", "the", "for", "about", "of", "on",
}
_QUESTION_WORDS = {
    "chi", "cosa", "che", "cos", "quale", "quali", "qual", "quando", "dove", "come", "perché",
    "perche", "perchè", "quanto", "quanti", "quante", "quanta", "who", "what", "when", "where",
    "why", "which", "how", "whom", "whose", "is", "are", "does", "did", "do", "can",
}
_WORD = re.compile(r"[\w']+", re.UNICODE)
MAX_ELLIPTICAL_WORDS = 4


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text.replace("’", "'"))]


def _lead(message: str) -> str | None:
    """The connective the message starts with, if any."""
    low = " ".join(_words(message))
    for lead in _LEADS:
        if low == lead or low.startswith(lead + " "):
            return lead
    return None


def is_elliptical(message: str) -> bool:
    words = _words(message)
    if not words:
        return False
    if _lead(message):
        return True
    return len(words) <= MAX_ELLIPTICAL_WORDS and not (set(words) & _QUESTION_WORDS) and not any(
        w.split("'")[0] in _QUESTION_WORDS for w in words
    )


def _fragment(message: str) -> str:
    """What the follow-up adds: the message without its connective and leading articles."""
    text = message.strip().replace("’", "'")
    lead = _lead(text)
    if lead:
        # remove the same number of words as the connective has, keeping original casing
        for _ in lead.split():
            text = re.sub(r"^\s*[\w']+[\s,]*", "", text, count=1)
    while True:
        m = re.match(r"^\s*([\w]+)(?:'|\s+)", text)
        if not m or m.group(1).lower() not in _DROP:
            break
        text = text[m.end():]
    text = text.strip().rstrip("?!.;, ").strip()
    # a trailing "invece"/"instead" adds nothing
    text = re.sub(r"[\s,]+(invece|instead|allora)$", "", text, flags=re.IGNORECASE)
    return text


def _previous_question(history: list[tuple[str, str]]) -> str:
    """The user's last full (non-elliptical) question, or the first one asked."""
    users = [u for u, _ in history if u and u.strip()]
    for user in reversed(users):
        if not is_elliptical(user):
            return user.strip()
    return users[0].strip() if users else ""


def rule_rewrite(history: list[tuple[str, str]], message: str) -> str:
    message = message.strip()
    if not history or not is_elliptical(message):
        return message
    previous = _previous_question(history)
    fragment = _fragment(message)
    if not previous or not fragment:
        return message
    if not previous.endswith(("?", ".", "!")):
        previous += "?"
    return f"{previous} {fragment}"


def _transcript(history: list[tuple[str, str]], max_turns: int = 4, max_chars: int = 600) -> str:
    lines = []
    for user, assistant in history[-max_turns:]:
        lines.append(f"Utente: {user.strip()}")
        if assistant:
            a = assistant.strip()
            lines.append(f"Assistente: {a[:max_chars]}{'…' if len(a) > max_chars else ''}")
    return "\n".join(lines)


def standalone_question(history: list[tuple[str, str]], message: str, llm=None) -> str:
    """``message`` as a question that needs no conversation to be understood.

    ``history`` is the list of (user, assistant) turns before ``message``. ``llm`` is an
    ``rag.llm.LLM``; when it fails (or answers nothing usable) the deterministic rule is used.
    """
    message = message.strip()
    if not history or not message:
        return message
    if llm is None:
        return rule_rewrite(history, message)
    from rag.llm import LLMError
    from rag.prompts import render

    try:
        system = render(llm.config.prompts_dir, "rewrite_system")
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": f"{_transcript(history)}\n\nUltimo messaggio: {message}"},
        ]
        rewritten = llm.complete(messages, max_tokens=120).strip().strip('"«»').strip()
    except (LLMError, OSError):
        return rule_rewrite(history, message)
    if not rewritten or len(rewritten) > 4 * len(message) + 300:
        return rule_rewrite(history, message)
    return rewritten.splitlines()[0].strip()
