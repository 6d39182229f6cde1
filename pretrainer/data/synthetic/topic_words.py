"""Topic vocabularies: eight domains of real English stems.

Each topic has agents (people who act), things (objects of actions), transitive
verbs and topic adjectives.  Lists are pairwise disjoint across topics and from
the general/polarity lists (tested), so a word identifies its topic; no topic
name itself ("sports", "medicine", ...) is a lexicon word.  List order is the
corpus frequency rank.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicWords:
    name: str
    agents: tuple[str, ...]
    things: tuple[str, ...]
    verbs: tuple[str, ...]
    adjectives: tuple[str, ...]


def _topic(name: str, agents: str, things: str, verbs: str, adjectives: str) -> TopicWords:
    return TopicWords(
        name, tuple(agents.split()), tuple(things.split()), tuple(verbs.split()),
        tuple(adjectives.split()),
    )


TOPIC_WORDS = (
    _topic(
        "sports",
        "athlete coach player referee captain goalkeeper runner swimmer umpire "
        "champion striker trainer boxer sprinter",
        "ball match goal stadium team league trophy racket tournament helmet "
        "medal whistle net court bat glove jersey marathon race lap penalty "
        "victory foul scoreboard locker gym arena podium hurdle relay treadmill "
        "dumbbell sneaker",
        "kick throw catch win lose train defend pass block serve chase dribble "
        "shoot swing hit",
        "athletic competitive muscular defensive professional amateur tactical "
        "sweaty undefeated sporty",
    ),
    _topic(
        "medicine",
        "doctor nurse surgeon patient pharmacist therapist dentist paramedic "
        "physician midwife pediatrician radiologist",
        "hospital clinic pill vaccine injury fever disease infection wound "
        "tablet dose prescription symptom diagnosis stethoscope syringe ward "
        "ambulance surgery virus tooth antibiotic allergy pulse heart lung bone "
        "vein cough rash tumor therapy thermometer crutch ointment",
        "treat examine heal cure diagnose prescribe inject vaccinate monitor "
        "measure sterilize test bandage admit discharge",
        "medical clinical surgical sterile chronic acute infectious feverish "
        "contagious pharmaceutical",
    ),
    _topic(
        "cooking",
        "chef cook baker waiter butcher host guest diner apprentice caterer",
        "soup recipe oven knife loaf pan kettle spoon bowl sauce flour butter "
        "salt pepper onion garlic potato tomato cake bread pie stew dish plate "
        "kitchen spice herb lemon cheese noodle sandwich dessert menu meal apron "
        "stove cookie cherry",
        "bake boil chop stir fry roast slice peel grill season taste mix whisk "
        "simmer knead",
        "spicy salty crispy savory culinary sweet sour juicy creamy crunchy",
    ),
    _topic(
        "music",
        "singer pianist drummer violinist composer conductor guitarist musician "
        "soloist cellist trumpeter",
        "song melody guitar piano drum violin concert album chord rhythm lyric "
        "harmony orchestra choir band symphony opera note stage microphone "
        "trumpet flute cello anthem ballad chorus radio speaker tempo rehearsal "
        "encore playlist headphone verse",
        "sing play compose perform record tune strum hum conduct rehearse write "
        "arrange hear improvise release",
        "musical melodic acoustic rhythmic orchestral lyrical classical operatic "
        "vocal symphonic",
    ),
    _topic(
        "nature",
        "farmer hiker gardener ranger fisherman hunter botanist shepherd "
        "forester camper",
        "river forest mountain storm rain cloud wind tree leaf flower meadow "
        "valley lake snow thunder lightning sky hill rock moon field seed branch "
        "deer goose sheep mouse fox wolf bird nest frost fog breeze blossom creek",
        "plant grow water climb explore harvest prune gather observe cross hunt "
        "feed shelter dig track",
        "rainy stormy windy sunny cloudy wild foggy snowy rural icy",
    ),
    _topic(
        "technology",
        "engineer programmer developer technician designer scientist analyst "
        "inventor hacker administrator tester",
        "computer laptop software server network database keyboard screen robot "
        "algorithm code chip battery sensor cable device app website phone "
        "router printer processor memory file password update browser signal "
        "gadget circuit module backup camera drone firmware spreadsheet pixel",
        "install program debug compile upload download configure encrypt reboot "
        "design scan deploy optimize connect delete",
        "digital electronic wireless automatic virtual technical binary portable "
        "robotic computational",
    ),
    _topic(
        "finance",
        "banker investor accountant trader broker auditor economist cashier "
        "lender borrower clerk shareholder",
        "bank loan stock bond market budget tax profit debt dollar coin credit "
        "account fund share salary wage invoice receipt payment mortgage asset "
        "dividend portfolio currency wallet price deposit insurance pension bill "
        "revenue ledger expense",
        "invest borrow lend save spend sell trade audit pay earn owe withdraw "
        "calculate charge insure",
        "financial fiscal monetary economic taxable annual quarterly corporate "
        "bankrupt wealthy",
    ),
    _topic(
        "travel",
        "traveler tourist pilot passenger guide driver sailor steward voyager "
        "porter backpacker hitchhiker",
        "airport hotel suitcase passport railway flight map bus taxi ferry "
        "journey trip beach island museum station road bridge highway cruise "
        "tour visa souvenir compass harbor voyage itinerary hostel postcard "
        "border backpack cabin resort coast airline terminal",
        "visit book pack unpack board fly drive sail reserve navigate "
        "photograph rent ride cancel miss",
        "scenic coastal tropical foreign exotic international domestic overnight "
        "remote nautical",
    ),
)

TOPICS = [t.name for t in TOPIC_WORDS]
