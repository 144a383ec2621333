# ruff: noqa: E501  (one pattern per line reads better than wrapped regular expressions)
"""The word lists inbound SMS are matched against, kept apart from the code that uses them.

Everything here is matched against *normalised* text (see ``classify.normalise``): NFKC,
case-folded, accents removed ("más" -> "mas", "daño" -> "dano"), apostrophes dropped
("don't" -> "dont"), any other punctuation or emoji turned into a space, runs of three or more
identical letters shortened to one ("diiiie" -> "die"), single letters spelled out joined
("k i l l" -> "kill"), spaces collapsed.

Crisis patterns are recall-first: a false positive costs a clinician a look, a miss can cost a
life (compliance brief §6.4). Negation never suppresses a match ("not suicidal" still goes to a
human). Changing these lists is a clinical decision: add a row to the table test
(tests/unit/test_replies_classify.py) with every change, and never remove a pattern to fix a false
positive.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# Crisis: (rule name, regular expression). Searched anywhere in the message, on the normalised
# text and on a "de-leeted" copy (1->i, 3->e, 0->o, 4->a, 5->s, @->a, $->s).
# ---------------------------------------------------------------------------------------------
CRISIS_PATTERNS: tuple[tuple[str, str], ...] = (
    # Family 1 — suicide words and their common misspellings (compliance §6.4 lexicon
    # "suicid"; spellings seen in public crisis-text corpora: suicde, sucide, suiside, ...).
    ("suicide", r"\b(suicid|suicd|sucid|suisid|suisd|suicied|suacid|sucied|siucid|suiced|sucuid)"),
    # Online "algospeak" used to dodge moderation; patients use it too.
    ("suicide_algospeak", r"\b(sewer ?slide|unalive|un alive|self ?delete|kys)\b"),
    # Family 2 — killing oneself, with the spellings people type in a hurry ("kil myself",
    # "kill my self", "killmyself", "kms").
    ("kill_myself", r"\bki+l+(ing|ed|l)? ?(my ?s[ea]lf|myslef|mysefl|myelf|me ?self|myself)"),
    ("kill_myself", r"\bkms\b"),
    ("kill_myself", r"\bkill me\b"),
    # Family 3 — wanting to die / not wanting to live (compliance §6.4 "want to die",
    # "better off dead", "no reason to live", "can't go on"; VERA-MH burdensomeness cues).
    ("want_to_die", r"\b(want|wanna|wish|going|gonna|ready|plan|planning|trying|try) (to )?(die|be dead)\b"),
    ("want_to_die", r"\bwish (i|id) (was|were|could be|had) (dead|died|never been born)"),
    ("want_to_die", r"\b(i|im) (should|could) (just )?die\b"),
    ("want_to_die", r"\bbetter off (dead|without me|gone)\b"),
    ("want_to_die", r"\b(they|theyd|everyone|everybody|family|world|kids)( would| will| all)? be better off\b"),
    ("want_to_die", r"\b(dont|do not|dnt|never) (want|wanna) (to )?(live|be alive|be here|exist|wake up|go on)"),
    ("want_to_die", r"\bpoint (of|in) (living|life|going on)\b"),
    ("want_to_die", r"\b(no|any) (reason|point) (to|in|of) (live|living|life|go on|going on)"),
    ("want_to_die", r"\bnothing (left )?to live for\b"),
    ("want_to_die", r"\b(cant|can not|cannot|cnt) go on($| like this| anymore| any more| living| with)"),
    ("want_to_die", r"\b(cant|can not|cannot|cnt) (do this|take (it|this)|keep going) any ?more\b"),
    ("want_to_die", r"\b(tired|sick) of (living|being alive|life)\b"),
    ("want_to_die", r"\blife (is not|isnt|aint) worth (it|living)"),
    ("want_to_die", r"\b(not|never) (be )?(here|around) (anymore|any more|much longer)"),
    ("want_to_die", r"\b(final|last) (goodbye|good bye)\b"),
    # Family 4 — ending it (compliance §6.4 "end (it|my life)"); "I want to end it all" is
    # the reason crisis runs before the END opt-out keyword.
    ("end_it", r"\bend(ing)? (it|it all|my life|everything|things|myself|my own life)\b"),
    ("end_it", r"\bwant (it|this|everything) (all )?to (end|stop|be over)\b"),
    ("end_it", r"\b(take|taking) my (own )?life\b"),
    # Family 5 — self-harm methods and acts (compliance §6.4 "hurt myself").
    ("self_harm", r"\b(hurt|hurting|harm|harming|cut|cutting|cuttin|burn|burning) (my ?self|me self)\b"),
    ("self_harm", r"\bself ?(harm|harming|harmed|injur)"),
    ("self_harm", r"\b(hang|hanging|shoot|shooting|drown|drowning) (my ?self)\b"),
    ("self_harm", r"\bslit (my )?(wrist|wrists|throat)\b"),
    ("self_harm", r"\bjump (off|from|in front)\b"),
    # Family 6 — overdose (compliance §6.4 "overdose"; pills taken in quantity).
    ("overdose", r"\b(over ?dose|over ?dosed|over ?dosing|overdoze|ovrdose|od|oded|oding)\b"),
    ("overdose", r"\b(took|take|taken|taking|swallowed|swallow) (all|every|the whole|a whole|the rest of|too many|a bunch of|a lot of)( of)? (my |the |those |these )?(pills|meds|medication|medications|medicine|tablets|bottle|pack)"),
    ("overdose", r"\btoo many (pills|meds|tablets)\b"),
    # "I OD'd" normalises to "i odd"; only after a subject, so the word "odd" stays harmless.
    ("overdose", r"\b(i|ive|just|almost|gonna|going to|might|think i) (odd|od|oded)\b"),
    # Family 7 — Spanish basics (clinic patients text in Spanish too).
    ("spanish", r"\b(suicidarme|suicidio|matarme|me quiero matar|me voy a matar)\b"),
    ("spanish", r"\b(me quiero morir|quiero morir|quiero morirme|me voy a morir|deseo morir)\b"),
    ("spanish", r"\bno quiero (vivir|seguir viviendo|estar aqui|despertar)\b"),
    ("spanish", r"\b(quitarme la vida|acabar con (todo|mi vida)|terminar con (todo|mi vida))\b"),
    ("spanish", r"\b(hacerme dano|lastimarme|cortarme|sobredosis)\b"),
    ("spanish", r"\bmejor (muerto|muerta)\b"),
    ("spanish", r"\bno vale la pena vivir\b"),
)

# ---------------------------------------------------------------------------------------------
# Opt-out, opt-in and help keywords: the WHOLE message must be one of these (after
# normalisation and after dropping filler words such as "please").
# ---------------------------------------------------------------------------------------------

# Twilio's default opt-out set on long codes and toll-free (REVOKE and OPTOUT since May 2025),
# which is also the FCC's per-se revocation list (compliance §1.3). Twilio blocks the number
# and auto-replies when one of these arrives alone.
TWILIO_OPT_OUT = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
)
# Spellings Twilio does not act on but a reasonable person means the same (compliance §1.3
# Rec.: add "OPT OUT" and "STOP ALL"), plus Spanish keywords used by Spanish SMS programmes.
EXTRA_OPT_OUT = frozenset(
    {"stop all", "opt out", "unsub", "stop it", "alto", "baja", "parar", "detener", "cancelar"}
)
# Keywords that, alone, may have been meant as "cancel my appointment" (compliance §1.4):
# they are opt-outs, and also open a staff task to call the patient.
CANCEL_WORDS = frozenset({"cancel", "cancelar"})

# Twilio's default opt-in set. YES counts only from a number that is opted out (it is also an
# ordinary answer to a question).
TWILIO_OPT_IN = frozenset({"start", "unstop"})
CONDITIONAL_OPT_IN = frozenset({"yes"})

# Twilio's default help set, plus Spanish.
TWILIO_HELP = frozenset({"help", "info"})
EXTRA_HELP = frozenset({"ayuda"})

# Words that can surround a keyword without changing it: "STOP PLEASE", "please cancel".
FILLER_WORDS = frozenset(
    {"please", "pls", "plz", "plse", "now", "thanks", "thank", "you", "thx", "ty", "ok", "okay",
     "just", "por", "favor", "gracias"}
)

# ---------------------------------------------------------------------------------------------
# Natural-language opt-outs (FCC 2024 "any reasonable manner"; compliance §1.3 Rec. examples).
# Searched anywhere in the message. Twilio does not block these: our database is the only
# thing that stops the next text.
# ---------------------------------------------------------------------------------------------
# What a patient calls our texts. Calls and emails are left out on purpose: "don't call me,
# text me" must not revoke SMS consent; those messages reach staff as ordinary replies.
_MEDIUM = r"(text|texts|texting|txt|txts|txting|message|messages|messaging|msg|msgs|sms|contact|contacting|send|sending)"
NATURAL_OPT_OUT_PATTERNS: tuple[tuple[str, str], ...] = (
    ("stop_texting", rf"(?<!dont )(?<!do not )(?<!never )\bstop {_MEDIUM}\b"),
    ("stop_texting", r"\bplease stop\b$"),
    ("dont_text_me", rf"\b(dont|do not|dnt|never) (ever )?{_MEDIUM} me\b"),
    ("remove_me", r"\b(remove|delete|take) me (from|off)\b"),
    ("remove_me", r"\bremove me\b"),
    ("remove_me", r"\b(unsubscribe|unsub|opt) me\b"),
    ("remove_me", r"\b(unsubscribe|optout|opt out|stopall)\b"),
    ("no_more_messages", rf"\bno more {_MEDIUM}\b"),
    ("no_more_messages", r"\bleave me alone\b"),
    ("wrong_number", r"\bwrong (number|person|phone)\b"),
    ("spanish_opt_out", r"\bno mas (mensajes|textos|msjs|sms)\b"),
    ("spanish_opt_out", r"\bno me (envies|envien|mande|manden|mandes|escriban|escribas|contacten)\b"),
    ("spanish_opt_out", r"\b(dejen|deja|dejar) de (enviar|mandar|escribir)"),
    ("spanish_opt_out", r"\b(darme|dame|dar) de baja\b"),
)

# ---------------------------------------------------------------------------------------------
# Appointment replies (compliance §1.4 Rec.): digits first, never CANCEL or YES; "C" is
# deliberately absent (clinics use it for both confirm and cancel).
# ---------------------------------------------------------------------------------------------
CONFIRM_WORDS = frozenset({"1", "confirm", "confirmed", "y", "confirmo", "confirmar"})
RESCHEDULE_WORDS = frozenset({"2", "r", "reschedule", "n", "no", "reprogramar"})
