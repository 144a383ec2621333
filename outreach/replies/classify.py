"""What an inbound SMS means, decided by a pure function.

Order matters and follows the issue (and compliance brief R18): crisis language first
("I want to end it all" contains END), then opt-out, opt-in, help, appointment replies, and
everything else. The word lists live in ``phrases.py``; this module only normalises and matches.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from outreach.models import InboundClass
from outreach.replies import phrases

# Flags: facts about a message beyond its one classification.
BARE_CANCEL = "bare_cancel"  # CANCEL alone: an opt-out that may have meant "cancel my visit"
ALSO_OPT_OUT = "also_opt_out"  # a crisis message that is also an opt-out ("stop texting me, ...")
TWILIO_KEYWORD = "twilio_keyword"  # Twilio itself acted on it (blocked/unblocked, auto-replied)
NATURAL_LANGUAGE = "natural_language"  # an opt-out in the patient's own words

# The rule of YES (and the like) from a number that is not opted out: the one answer that
# would differ had the sender been opted out.
YES_NOT_OPTED_OUT = "yes_not_opted_out"

_LEET = str.maketrans({"1": "i", "3": "e", "0": "o", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_LEET_KEYS = frozenset(chr(c) for c in _LEET)
_QUOTES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'", "ʼ": "'"})
_ELONGATED = re.compile(r"([^\W\d_])\1{2,}")
_SPELLED_OUT = re.compile(r"\b(?:[^\W\d_] ){2,}[^\W\d_]\b")

_CRISIS = tuple((name, re.compile(pattern)) for name, pattern in phrases.CRISIS_PATTERNS)
_NATURAL_OPT_OUT = tuple(
    (name, re.compile(pattern)) for name, pattern in phrases.NATURAL_OPT_OUT_PATTERNS
)


@dataclass(frozen=True)
class Classification:
    classification: InboundClass
    # Which rule decided it, e.g. "crisis:end_it", "keyword:stop", "phrase:stop_texting".
    rule: str
    flags: frozenset[str] = field(default_factory=frozenset)

    def has(self, flag: str) -> bool:
        return flag in self.flags


def normalise(text: str, *, deleet: bool = False) -> str:
    """Lower-case words separated by single spaces; see ``phrases`` for every step and why."""
    folded = unicodedata.normalize("NFKC", text).casefold().translate(_QUOTES)
    if deleet:
        folded = folded.translate(_LEET)
    bare = "".join(c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c))
    bare = bare.replace("'", "")
    words = re.sub(r"[\W_]+", " ", bare)
    words = _ELONGATED.sub(r"\1", words)
    words = _SPELLED_OUT.sub(lambda m: m.group(0).replace(" ", ""), words)
    return " ".join(words.split())


def crisis_rule(body: str, normalised: str | None = None) -> str | None:
    """The first crisis pattern the body matches, or None. Recall over precision.
    ``normalised``: ``normalise(body)``, when the caller has it already."""
    plain = normalise(body) if normalised is None else normalised
    texts = [plain]
    # Read with digits as letters only where there is a digit or symbol to read so (after the
    # same NFKC fold as ``normalise``: a fullwidth "１" is a 1): otherwise it is the same text.
    if not _LEET_KEYS.isdisjoint(unicodedata.normalize("NFKC", body)):
        texts.append(normalise(body, deleet=True))
    for text in texts:
        for name, pattern in _CRISIS:
            if pattern.search(text):
                return name
    return None


def classify(
    body: str, opt_out_type: str | None = None, *, sender_opted_out: bool = False
) -> Classification:
    """Classify one inbound SMS.

    ``opt_out_type`` is Twilio's ``OptOutType`` field when present (STOP / START / HELP): Twilio
    has already acted on it, so it is honoured. ``sender_opted_out`` says whether the number
    is currently opted out of SMS: only then does YES mean "opt me back in".
    """
    text = normalise(body)
    words = text.split()
    core = " ".join(w for w in words if w not in phrases.FILLER_WORDS)
    single_word = len(words) == 1
    twilio_type = (opt_out_type or "").strip().upper()

    opt_out = _opt_out(text, core, single_word, twilio_type)
    crisis = crisis_rule(body, text)
    if crisis is not None:
        flags = {ALSO_OPT_OUT} | (opt_out.flags & {TWILIO_KEYWORD}) if opt_out else set()
        return Classification(InboundClass.CRISIS, f"crisis:{crisis}", frozenset(flags))
    if opt_out is not None:
        return opt_out

    if twilio_type == "START":
        return Classification(InboundClass.OPT_IN, "optouttype:start", frozenset({TWILIO_KEYWORD}))
    if core in phrases.TWILIO_OPT_IN or (core in phrases.CONDITIONAL_OPT_IN and sender_opted_out):
        flags = {TWILIO_KEYWORD} if single_word else set()
        return Classification(InboundClass.OPT_IN, f"keyword:{core}", frozenset(flags))

    if twilio_type == "HELP":
        return Classification(InboundClass.HELP, "optouttype:help", frozenset({TWILIO_KEYWORD}))
    if core in phrases.TWILIO_HELP or core in phrases.EXTRA_HELP:
        flags = {TWILIO_KEYWORD} if single_word and core in phrases.TWILIO_HELP else set()
        return Classification(InboundClass.HELP, f"keyword:{core}", frozenset(flags))

    if core in phrases.CONFIRM_WORDS:
        return Classification(InboundClass.CONFIRM, f"keyword:{core}")
    if core in phrases.RESCHEDULE_WORDS:
        return Classification(InboundClass.RESCHEDULE, f"keyword:{core}")

    if core in phrases.CONDITIONAL_OPT_IN:
        # YES from a number that is not opted out: an answer to something; staff read it.
        return Classification(InboundClass.OTHER, YES_NOT_OPTED_OUT)
    if not text:
        # Only emoji or punctuation ("👍", "?"), or nothing at all (a picture): staff read it.
        return Classification(InboundClass.OTHER, "no_words" if body.strip() else "empty")
    return Classification(InboundClass.OTHER, "free_text")


def depends_on_consent(result: Classification) -> bool:
    """Whether ``result``, classified with ``sender_opted_out=False``, could have come out
    otherwise for a sender who is opted out."""
    return result.rule == YES_NOT_OPTED_OUT


def _opt_out(text: str, core: str, single_word: bool, twilio_type: str) -> Classification | None:
    cancel = {BARE_CANCEL} if core in phrases.CANCEL_WORDS else set()
    if twilio_type == "STOP":
        return Classification(
            InboundClass.OPT_OUT, "optouttype:stop", frozenset({TWILIO_KEYWORD} | cancel)
        )
    if core in phrases.TWILIO_OPT_OUT:
        # Twilio acts only on a keyword sent alone ("STOP PLEASE" is not blocked).
        twilio = {TWILIO_KEYWORD} if single_word else set()
        return Classification(InboundClass.OPT_OUT, f"keyword:{core}", frozenset(twilio | cancel))
    if core in phrases.EXTRA_OPT_OUT:
        return Classification(InboundClass.OPT_OUT, f"keyword:{core}", frozenset(cancel))
    for name, pattern in _NATURAL_OPT_OUT:
        if pattern.search(text):
            return Classification(InboundClass.OPT_OUT, f"phrase:{name}", frozenset({NATURAL_LANGUAGE}))
    return None
