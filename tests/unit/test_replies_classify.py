"""Inbound SMS classification as a table: body (+ OptOutType, opted-out state) -> class, flags."""

from __future__ import annotations

import pytest

from outreach.models import InboundClass
from outreach.replies.classify import (
    ALSO_OPT_OUT,
    BARE_CANCEL,
    NATURAL_LANGUAGE,
    TWILIO_KEYWORD,
    classify,
    normalise,
)

CRISIS = InboundClass.CRISIS
OPT_OUT = InboundClass.OPT_OUT
OPT_IN = InboundClass.OPT_IN
HELP = InboundClass.HELP
CONFIRM = InboundClass.CONFIRM
RESCHEDULE = InboundClass.RESCHEDULE
OTHER = InboundClass.OTHER

# (body, expected class, flags that must be present)
TABLE: list[tuple[str, InboundClass, frozenset[str]]] = [
    # Twilio's opt-out keywords, in every shape a phone produces.
    ("STOP", OPT_OUT, frozenset({TWILIO_KEYWORD})),
    ("Stop.", OPT_OUT, frozenset({TWILIO_KEYWORD})),
    (" stop ", OPT_OUT, frozenset({TWILIO_KEYWORD})),
    ("stop!!!", OPT_OUT, frozenset()),
    ("STOPALL", OPT_OUT, frozenset({TWILIO_KEYWORD})),
    ("STOP ALL", OPT_OUT, frozenset()),
    ("Unsubscribe", OPT_OUT, frozenset({TWILIO_KEYWORD})),
    ("END", OPT_OUT, frozenset({TWILIO_KEYWORD})),
    ("quit", OPT_OUT, frozenset({TWILIO_KEYWORD})),
    ("Revoke", OPT_OUT, frozenset({TWILIO_KEYWORD})),
    ("OPTOUT", OPT_OUT, frozenset({TWILIO_KEYWORD})),
    ("opt out", OPT_OUT, frozenset()),
    ("Opt-out", OPT_OUT, frozenset()),
    ("ＳＴＯＰ", OPT_OUT, frozenset()),
    ("s t o p", OPT_OUT, frozenset()),
    ("STOP PLEASE", OPT_OUT, frozenset()),
    ("stop 🛑", OPT_OUT, frozenset()),
    ("Cancel", OPT_OUT, frozenset({BARE_CANCEL, TWILIO_KEYWORD})),
    ("CANCEL.", OPT_OUT, frozenset({BARE_CANCEL})),
    ("please cancel", OPT_OUT, frozenset({BARE_CANCEL})),
    ("Cancelar", OPT_OUT, frozenset({BARE_CANCEL})),
    # Opt-outs in the patient's own words.
    ("Please stop texting me", OPT_OUT, frozenset({NATURAL_LANGUAGE})),
    ("don't text me", OPT_OUT, frozenset({NATURAL_LANGUAGE})),
    ("Don’t ever text me again", OPT_OUT, frozenset({NATURAL_LANGUAGE})),
    ("remove me from your list", OPT_OUT, frozenset({NATURAL_LANGUAGE})),
    ("No more messages", OPT_OUT, frozenset({NATURAL_LANGUAGE})),
    ("stop sending me these", OPT_OUT, frozenset({NATURAL_LANGUAGE})),
    ("how do i unsubscribe?", OPT_OUT, frozenset({NATURAL_LANGUAGE})),
    ("Wrong number", OPT_OUT, frozenset({NATURAL_LANGUAGE})),
    ("No más mensajes", OPT_OUT, frozenset({NATURAL_LANGUAGE})),
    ("no mas mensajes por favor", OPT_OUT, frozenset({NATURAL_LANGUAGE})),
    ("Por favor no me envíen mensajes", OPT_OUT, frozenset({NATURAL_LANGUAGE})),
    # Crisis language wins over everything, keywords inside it included.
    ("I want to end it all", CRISIS, frozenset()),
    ("i want to kill myself", CRISIS, frozenset()),
    ("gonna kil myself tonight", CRISIS, frozenset()),
    ("k i l l my self", CRISIS, frozenset()),
    ("kms", CRISIS, frozenset()),
    ("thinking about suicide", CRISIS, frozenset()),
    ("feeling suicde", CRISIS, frozenset()),
    ("I'm not suicidal but I'm scared", CRISIS, frozenset()),
    ("su1c1dal", CRISIS, frozenset()),
    ("I dont want to live anymore", CRISIS, frozenset()),
    ("I wanna diiiie", CRISIS, frozenset()),
    ("everyone would be better off without me", CRISIS, frozenset()),
    ("better off dead", CRISIS, frozenset()),
    ("I took all my pills", CRISIS, frozenset()),
    ("took a whole bottle of pills", CRISIS, frozenset()),
    ("I think I overdosed", CRISIS, frozenset()),
    ("I OD'd", CRISIS, frozenset()),
    ("I keep wanting to hurt myself", CRISIS, frozenset()),
    ("I can't go on.", CRISIS, frozenset()),
    ("there's no reason to live", CRISIS, frozenset()),
    ("quiero morirme", CRISIS, frozenset()),
    ("No quiero vivir", CRISIS, frozenset()),
    ("stop texting me I want to die", CRISIS, frozenset({ALSO_OPT_OUT})),
    # Opt-in: START/UNSTOP always, YES only from an opted-out number (next table).
    ("START", OPT_IN, frozenset({TWILIO_KEYWORD})),
    ("Unstop", OPT_IN, frozenset({TWILIO_KEYWORD})),
    ("start please", OPT_IN, frozenset()),
    ("yes", OTHER, frozenset()),
    # Help.
    ("HELP", HELP, frozenset({TWILIO_KEYWORD})),
    ("info", HELP, frozenset({TWILIO_KEYWORD})),
    ("Ayuda", HELP, frozenset()),
    # Appointment replies: digits first.
    ("1", CONFIRM, frozenset()),
    ("１", CONFIRM, frozenset()),
    ("1.", CONFIRM, frozenset()),
    ("Confirm", CONFIRM, frozenset()),
    ("Y", CONFIRM, frozenset()),
    ("2", RESCHEDULE, frozenset()),
    ("２", RESCHEDULE, frozenset()),
    ("R", RESCHEDULE, frozenset()),
    ("reschedule", RESCHEDULE, frozenset()),
    ("No", RESCHEDULE, frozenset()),
    # Everything else goes to staff: including things that merely contain keywords.
    ("cancel my appointment", OTHER, frozenset()),
    ("weekend works", OTHER, frozenset()),
    ("I'll stop by tomorrow", OTHER, frozenset()),
    ("please don't stop texting me", OTHER, frozenset()),
    ("Don't call me, text me", OTHER, frozenset()),
    ("help me find the parking", OTHER, frozenset()),
    ("I'm dying to see you", OTHER, frozenset()),
    ("I can't go on Tuesday, can we do Wednesday?", OTHER, frozenset()),
    ("that's odd", OTHER, frozenset()),
    ("12", OTHER, frozenset()),
    ("👍", OTHER, frozenset()),
    ("", OTHER, frozenset()),
    ("Thank you!", OTHER, frozenset()),
    ("See you at 10", OTHER, frozenset()),
]


@pytest.mark.parametrize(("body", "expected", "flags"), TABLE, ids=[repr(row[0]) for row in TABLE])
def test_inbound_body_is_classified_as_expected(
    body: str, expected: InboundClass, flags: frozenset[str]
) -> None:
    result = classify(body)
    assert result.classification == expected, result.rule
    assert flags <= result.flags


def test_the_table_is_large_enough_to_mean_something() -> None:
    assert len(TABLE) >= 60


@pytest.mark.parametrize("body", ["YES", "yes", "Yes!", "YES please"])
def test_yes_opts_back_in_only_from_an_opted_out_number(body: str) -> None:
    assert classify(body, sender_opted_out=True).classification == OPT_IN
    assert classify(body, sender_opted_out=False).classification == OTHER


def test_twilio_opt_out_type_is_honoured_even_for_words_we_would_not_match() -> None:
    result = classify("arrêt", "STOP")
    assert result.classification == OPT_OUT
    assert TWILIO_KEYWORD in result.flags
    assert classify("commencer", "START").classification == OPT_IN
    assert classify("aide", "HELP").classification == HELP


def test_crisis_still_wins_over_a_twilio_opt_out_type_and_keeps_the_opt_out() -> None:
    result = classify("end it all", "STOP")
    assert result.classification == CRISIS
    assert ALSO_OPT_OUT in result.flags


def test_stop_inside_a_crisis_sentence_is_not_an_opt_out() -> None:
    # "END" is in the sentence, but only a keyword standing alone opts out.
    result = classify("I just want it all to end")
    assert result.classification == CRISIS
    assert ALSO_OPT_OUT not in result.flags


def test_normalise_folds_width_case_accents_apostrophes_and_elongation() -> None:
    assert normalise("  ＤＯＮ’Ｔ   text me!!! ") == "dont text me"
    assert normalise("NO MÁS") == "no mas"
    assert normalise("pleeeease") == "please"
    assert normalise("2000") == "2000"
