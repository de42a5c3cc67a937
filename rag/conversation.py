"""Follow-up questions → one standalone question that retrieval can answer on its own.

With a language model, the conversation and the last message go to ``prompts/rewrite_*``. Without
one, deterministic rules carry the entity of the previous turns into the follow-up:

* a pronoun takes the name it stands for: "e chi lo ha sostituito al Real Madrid?" after
  "Ancelotti dove va?" → "Chi ha sostituito Ancelotti al Real Madrid?"; "did he score?" →
  "did Kvaratskhelia score?";
* an elliptical follow-up with a name replaces the previous question's name of the same kind
  (Italian clubs and places take an article, people do not): "Chi allena la Roma?" + "e il
  Milan?" → "Chi allena il Milan?";
* when no name of its kind is there, and the previous question asked "which ...?" ("Quali club
  vogliono Ancelotti?", "Which clubs want Ancelotti?"), the name takes the place of what was
  asked, and the question becomes a yes/no one about it: "e la Juventus?" → "La Juventus vuole
  Ancelotti?", "and Milan?" → "Does Milan want Ancelotti?" (the verb agrees with its new, single
  subject); in English, where names carry no article, a lone name of the previous question is
  replaced otherwise ("Who coaches Napoli?" + "and Milan?" → "Who coaches Milan?"); when nothing
  matches, it is added to the previous question;
* a follow-up that names nothing gets the previous question's topic: "chi ha segnato?" after
  "Com'è finita la finale di Champions?" → "Chi ha segnato? (la finale di Champions)".

A message that names what it asks about is returned unchanged.
"""

from __future__ import annotations

import re

from rag.question import analyse, names_in

# connectives that open an elliptical follow-up, longest first
_LEADS = (
    "and what about", "what about", "how about", "e invece", "ed invece", "e per", "e su",
    "invece", "anche", "and", "e", "ed",
)
_DROP = {
    "il", "lo", "la", "i", "gli", "le", "l", "un", "una", "uno", "del", "dello", "della", "dei",
    "degli", "delle", "per", "su", "sul", "sullo", "sulla", "sui", "sugli", "sulle", "di", "a",
    "al", "allo", "alla", "ai", "agli", "alle", "the", "for", "about", "of", "on",
}
_CONNECTIVES = {"e", "ed", "o", "oppure", "and", "or", "vs", "contro", "invece", "instead"}
_QUESTION_WORDS = {
    "chi", "cosa", "che", "cos", "quale", "quali", "qual", "quando", "dove", "come", "perché",
    "perche", "perchè", "quanto", "quanti", "quante", "quanta", "who", "what", "when", "where",
    "why", "which", "how", "whom", "whose", "is", "are", "does", "did", "do", "can",
}
_WORD = re.compile(r"[\w'’]+", re.UNICODE)
_CLITIC = re.compile(r"\b(?:lo|la|li|le|gli)\s+(ha|hanno|aveva|avevano|avrà|avranno)\s+(\w+)|"
                     r"\bl['’](ha|hanno|aveva|avevano|avrà|avranno)\s+(\w+)", re.I)
_EN_PERSON = re.compile(r"\b(he|him|she)\b", re.I)
_EN_POSSESSIVE = re.compile(r"\b(his)\b", re.I)
_IT_PERSON = re.compile(r"\b(lui|lei)\b", re.I)
_TRAILING = re.compile(r"[\s,]*(adesso|ora|ancora|oggi|attualmente|now|currently|still|today|invece|instead|"
                       r"allora)\s*$", re.I)
MAX_ELLIPTICAL_WORDS = 4
_TOPIC_END = re.compile(r"\s(?:" + "|".join(sorted(_QUESTION_WORDS - {"is", "are", "do", "does", "did", "can"}))
                        + r")\b", re.I)


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text.replace("’", "'"))]


def _lead(message: str) -> str | None:
    low = " ".join(_words(message))
    for lead in _LEADS:
        if low == lead or low.startswith(lead + " "):
            return lead
    return None


def _has_clause(message: str) -> bool:
    """A name followed by a word that is not an article, preposition, conjunction or adverb:
    a subject and its verb ("Ancelotti allenerà la Roma?", "Il Napoli ha vinto?"), a sentence
    of its own however short, not a fragment ("E il Milan?", "la Juventus adesso?")."""
    found = names_in(message)
    if not found:
        return False
    after = _WORD.findall(message[found[0][2]:].replace("’", "'"))
    if not after:
        return False
    word = after[0].lower()
    return after[0][:1].islower() and word.split("'")[0] not in _DROP | _CONNECTIVES and not _TRAILING.match(word)


def is_elliptical(message: str) -> bool:
    words = _words(message)
    if not words:
        return False
    if _lead(message):
        return True
    return len(words) <= MAX_ELLIPTICAL_WORDS and not (set(words) & _QUESTION_WORDS) and not any(
        w.split("'")[0] in _QUESTION_WORDS for w in words
    ) and not _has_clause(message)


def _fragment(message: str) -> str:
    """What the follow-up adds: the message without its connective (articles kept)."""
    text = message.strip().replace("’", "'")
    lead = _lead(text)
    if lead:
        for _ in lead.split():
            text = re.sub(r"^\s*[\w']+[\s,]*", "", text, count=1)
    text = text.strip().rstrip("?!.;, ").strip()
    return _TRAILING.sub("", text)


def _bare(fragment: str) -> str:
    """The fragment without leading articles and prepositions: "la Juventus" → "Juventus"."""
    text = fragment
    while True:
        m = re.match(r"^\s*([\w]+)(?:'|\s+)", text)
        if not m or m.group(1).lower() not in _DROP:
            return text.strip()
        text = text[m.end():]


def _user_turns(history: list[tuple[str, str]]) -> list[str]:
    return [u.strip() for u, _ in history if u and u.strip()]


def _previous_question(history: list[tuple[str, str]]) -> str:
    """The user's last question that names something (else the last full one, else the first)."""
    users = _user_turns(history)
    for user in reversed(users):
        if analyse(user).names and not is_elliptical(user):
            return user
    for user in reversed(users):
        if not is_elliptical(user):
            return user
    return users[0] if users else ""


def _topic(question: str) -> str:
    """What a question is about: from its first noun phrase or name to the end, without the
    question mark or trailing adverbs ("Com'è finita la finale di Champions?" → "la finale di
    Champions")."""
    text = question.strip().rstrip("?!. ")
    starts = [_article_start(text, s) for _n, s, _e, _a in names_in(text)]
    m = re.search(r"(?:^|\s)((?:il|lo|la|i|gli|le|un|una|uno|the|an?)\s|l['’]\w)", text, re.I)
    if m and m.start(1) > 0:
        starts.append(m.start(1))
    topic = text[min(starts):] if starts else text
    cut = _TOPIC_END.search(topic)
    if cut:  # "Kvaratskhelia dove gioca adesso" is about Kvaratskhelia
        topic = topic[: cut.start()]
    return _TRAILING.sub("", topic).strip()


def _carried(history: list[tuple[str, str]], message: str) -> list[tuple[str, bool]]:
    """Names of the latest turns (newest first) that the message does not use, each with its
    article when it had one ("la Coppa Italia"): (phrase, has article)."""
    present = {n.lower() for n, *_ in names_in(message)}
    out: list[tuple[str, bool]] = []
    for user in reversed(_user_turns(history)[-3:]):
        for name, s, e, article in names_in(user):
            phrase = user[_article_start(user, s):e] if article else name
            if name.lower() not in present and phrase not in [n for n, _ in out]:
                out.append((phrase, article))
    return out


def _person(carried: list[tuple[str, bool]]) -> str | None:
    """The first name without an article: in Italian, a person."""
    return next((n for n, article in carried if not article), carried[0][0] if carried else None)


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def rule_rewrite(history: list[tuple[str, str]], message: str) -> str:
    message = " ".join(message.split())
    if not history or not message:
        return message
    previous = _previous_question(history)
    if not previous:
        return message
    lead = _lead(message)
    if is_elliptical(message) and not (lead and set(_words(_fragment(message))) & _QUESTION_WORDS):
        return _elliptical(previous, message)
    if lead:  # "e chi lo ha sostituito?" is a question of its own, with a pronoun
        message = _fragment(message) + "?"
    asked = analyse(message)
    carried = _carried(history, message)
    if not carried:
        topic = _topic(previous)
        if asked.names or not topic:
            return _capitalise(message)
        return f"{_capitalise(message.rstrip('?'))}? ({topic})"
    text, used = _resolve_pronouns(message, carried)
    if used:
        rest = [n for n, _ in carried if n not in used and n.lower() not in text.lower()][:1]
        text = _capitalise(text)
        return f"{text} ({rest[0]})" if rest else text
    if asked.names:  # it names what it asks about: a question of its own
        return _capitalise(message)
    topic = _topic(previous)
    return f"{_capitalise(message.rstrip('?'))}? ({topic})" if topic else message


def _resolve_pronouns(message: str, carried: list[tuple[str, bool]]) -> tuple[str, list[str]]:
    """Put the carried name where a pronoun stands; returns the text and the names used."""
    text = re.sub(r"^\s*(?:e|ed|and)\s+", "", message, flags=re.I)
    person = _person(carried)
    if person is None:
        return text, []
    m = _CLITIC.search(text)
    if m:  # "chi lo ha sostituito" → "chi ha sostituito Ancelotti"
        aux, verb = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        return text[: m.start()] + f"{aux} {verb} {person}" + text[m.end():], [person]
    for pattern, form in ((_EN_PERSON, person), (_EN_POSSESSIVE, f"{person}'s"), (_IT_PERSON, person)):
        if pattern.search(text):
            return pattern.sub(form, text, count=1), [person]
    return text, []


def _elliptical(previous: str, message: str) -> str:
    fragment = _fragment(message)
    if not fragment:
        return message
    if not previous.endswith(("?", ".", "!")):
        previous += "?"
    new = names_in(fragment)
    if new:
        name, _s, _e, article = new[0]
        spans = [(s, e, art) for _n, s, e, art in names_in(previous)]
        english = analyse(previous).lang != "it"
        same_language = english == bool(re.match(r"\s*(what|how|and)\b", message, re.I))
        target = _same_kind(previous, spans, article or fragment[:1].islower(), english,
                            connective=_lead(message) is not None) if same_language else None
        if target is not None:
            s, e = target
            if english:  # "the Inter manager" → "the Juventus manager": keep the article
                return previous[:s] + _bare(fragment) + previous[e:]
            return previous[:_article_start(previous, s)] + fragment + previous[e:]
        filled = _fill_asked(previous, fragment, english) if same_language else None
        if filled:
            return filled
        if english and same_language and len(spans) == 1:  # "Who coaches Napoli?" → "Who coaches Milan?"
            s, e, _art = spans[0]
            return previous[:s] + _bare(fragment) + previous[e:]
        topic = _topic(previous)
        if not spans and same_language and not english and article and re.match(r"(?:il|lo|la|i|gli|le)\s|l'",
                                                                               topic, re.I):
            # "Chi ha vinto lo scudetto?" + "e la Coppa Italia?": what was asked about, replaced
            return previous[: previous.rfind(topic)] + fragment + previous[previous.rfind(topic) + len(topic):]
        return f"{previous} {_bare(fragment)}"
    if analyse(fragment).kind in ("what", "yesno"):  # a noun phrase ("la partita dopo"): add it
        return f"{previous} {fragment}"
    topic = _topic(previous)  # a question of its own ("dopo che ruolo ha"): give it the topic
    return f"{_capitalise(fragment)}? ({topic})"


# "Quali club vogliono ...?": what was asked, then its verb
_ASKED_IT = re.compile(r"^\s*(quali|quale)\s+(\w+)\s+(\w+)\b(.*)$", re.I)
_ASKED_EN = re.compile(r"^\s*(which|what)\s+(\w+)\s+(\w+)\b(.*)$", re.I)
# Italian third persons, plural → singular, where the endings below would get them wrong
_SINGULAR_IT = {
    "vogliono": "vuole", "possono": "può", "devono": "deve", "sono": "è", "hanno": "ha", "vanno": "va",
    "fanno": "fa", "stanno": "sta", "danno": "dà", "sanno": "sa", "escono": "esce", "tengono": "tiene",
    "vengono": "viene", "rimangono": "rimane", "dicono": "dice", "seguono": "segue",
}
_SINGULAR_ENDINGS_IT = (("rebbero", "rebbe"), ("ranno", "rà"), ("iscono", "isce"), ("vano", "va"),
                        ("ero", "e"), ("ano", "a"), ("ono", "e"))
# English auxiliaries that open a yes/no question, with the form a single subject takes
_AUX_EN = {"are": "is", "were": "was", "have": "has", "is": "is", "was": "was", "has": "has", "will": "will",
           "can": "can", "could": "could", "would": "would", "should": "should", "might": "might"}


def _singular_it(verb: str) -> str:
    """An Italian third-person plural verb in the singular ("vogliono" → "vuole", "cercano" →
    "cerca"); a verb that is not plural is returned as it is."""
    low = verb.lower()
    if low in _SINGULAR_IT:
        return _SINGULAR_IT[low]
    for plural, single in _SINGULAR_ENDINGS_IT:
        if low.endswith(plural) and len(low) > len(plural) + 1:
            return low[: -len(plural)] + single
    return verb


def _fill_asked(previous: str, fragment: str, english: bool) -> str | None:
    """The follow-up's name in the place of what "which ...?" asked: "Quali club vogliono
    Ancelotti?" + "la Juventus" → "La Juventus vuole Ancelotti?"; "Which clubs want Ancelotti?" +
    "Milan" → "Does Milan want Ancelotti?". None when the question does not ask "which ...?" of
    its subject ("Which team did Kvaratskhelia join?" asks for an object: a name goes elsewhere)."""
    m = (_ASKED_EN if english else _ASKED_IT).match(previous)
    if not m:
        return None
    which, noun, verb, rest = m.groups()
    rest = rest.rstrip(" ?!.")
    if noun.lower() in _QUESTION_WORDS or noun.lower() in _DROP:
        return None
    if not english:
        if verb.lower() in _DROP or verb.lower() in _QUESTION_WORDS:
            return None
        verb = _singular_it(verb) if which.lower() == "quali" else verb
        return f"{_capitalise(fragment)} {verb}{rest}?"
    low, name = verb.lower(), _bare(fragment)
    if low in ("do", "does", "did") or low in _DROP:
        return None  # "which team did X join": X is the subject
    if low in _AUX_EN:
        return f"{_capitalise(_AUX_EN[low])} {name}{rest}?"
    if low.endswith("ed"):  # a past: "Milan wanted Ancelotti?"
        return f"{name} {verb}{rest}?"
    base = verb[:-1] if low.endswith("s") and not low.endswith("ss") and not noun.lower().endswith("s") else verb
    return f"Does {name} {base}{rest}?"


def _same_kind(previous: str, spans: list[tuple[int, int, bool]], with_article: bool,
               english: bool, connective: bool = True) -> tuple[int, int] | None:
    """The previous question's name that the follow-up's name replaces. In Italian, a name with
    an article for one with an article (a club for a club), a bare one for a bare one (a person
    for a person); in English, a name used like a team ("the Inter manager", "Inter's", "at
    Inter")."""
    for s, e, article in spans:
        if english:
            team = re.search(r"\b(the|at|for|against|of)\s+$", previous[max(0, s - 9):s], re.I) or \
                re.match(r"['’]s\b", previous[e:e + 2])
            if team:
                return s, e
        elif article == with_article and (article or connective):
            return s, e  # a bare name replaces a person only after "e ..." ("e Mourinho?")
    return None


def _article_start(text: str, name_start: int) -> int:
    """Where the article before a name begins ("la Roma", "l'Inter", "the Inter"), if any."""
    m = re.search(r"(?:\b(?:il|lo|la|i|gli|le|the)\s+|\bl['’])$", text[:name_start], re.I)
    return m.start() if m else name_start


def _transcript(history: list[tuple[str, str]], max_turns: int = 4, max_chars: int = 600) -> str:
    lines = []
    for user, assistant in history[-max_turns:]:
        lines.append(f"Utente: {user.strip()}")
        if assistant:
            a = assistant.strip()
            lines.append(f"Assistente: {a[:max_chars]}{'…' if len(a) > max_chars else ''}")
    return "\n".join(lines)


def stands_alone(history: list[tuple[str, str]], message: str) -> bool:
    """A follow-up that names what it asks about, opens with no "e ..." / "and ...", leaves
    nothing out and points back at nothing ("Chi allena la Roma?" after any question): the
    model is not asked to rewrite it, which saves a round trip and a chance to get it wrong."""
    text = " ".join(message.split())
    if _lead(text) or is_elliptical(text) or not analyse(text).names:
        return False
    return rule_rewrite(history, text) == _capitalise(text)


def standalone_question(history: list[tuple[str, str]], message: str, llm=None) -> str:
    """``message`` as a question that needs no conversation to be understood.

    ``history`` is the list of (user, assistant) turns before ``message``. ``llm`` is an
    ``rag.llm.LLM``; when it fails (or answers nothing usable) the deterministic rules are used.
    """
    message = message.strip()
    if not history or not message:
        return message
    if llm is None:
        return rule_rewrite(history, message)
    if stands_alone(history, message):  # what the rules would give: the question itself
        return _capitalise(" ".join(message.split()))
    from rag.llm import LLMError
    from rag.prompts import render

    lang = analyse(message).lang
    try:
        messages = [
            {"role": "system", "content": render(llm.config.prompts_dir, "rewrite_system", lang)},
            {"role": "user", "content": render(llm.config.prompts_dir, "rewrite_user", lang,
                                               transcript=_transcript(history), message=message)},
        ]
        rewritten = llm.complete(messages, max_tokens=120).strip().strip('"«»').strip()
    except (LLMError, OSError):
        return rule_rewrite(history, message)
    if not rewritten or len(rewritten) > 4 * len(message) + 300:
        return rule_rewrite(history, message)
    return rewritten.splitlines()[0].strip()
