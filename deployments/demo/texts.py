"""The words a demo community speaks: topics (each a #tag), names, and the sentences its
posts, comments and messages are made of.

Plain text, so that search, tags and the web client have something to show. Nothing here
may contain a word a stack holds for review (the moderation blocklist), so every sentence
is ordinary and links are left out.
"""

from __future__ import annotations

TOPICS: tuple[str, ...] = (
    "python", "music", "cooking", "running", "photography", "travel", "gaming", "books",
    "coffee", "cycling", "gardening", "jazz", "movies", "science", "art", "football",
)  # fmt: skip

# What people say about each topic; a post is one or more of these and its #tags.
SAYINGS: dict[str, tuple[str, ...]] = {
    "python": (
        "Finally understood how asyncio schedules tasks",
        "Type hints caught a bug before it shipped today",
        "Rewrote a slow loop with numpy and it flies now",
        "Small functions, short modules, happy reviewers",
    ),
    "music": (
        "This album has been on repeat all week",
        "Learning a new chord progression on the piano",
        "Live music on a weeknight is underrated",
        "Found an old cassette of songs I recorded as a kid",
    ),
    "cooking": (
        "Slow-cooked beans with garlic and rosemary tonight",
        "Tried making fresh pasta, the kitchen is covered in flour",
        "A pinch of salt in the coffee grounds, trust me",
        "Roasted vegetables are the answer to most questions",
    ),
    "running": (
        "Ten kilometres before breakfast, legs are complaining",
        "Rainy run, empty paths, perfect tempo",
        "New shoes, same old hills",
        "Training plan week six: the long run got longer",
    ),
    "photography": (
        "Golden hour light on the old bridge",
        "Shooting film again, waiting for the scans is the hard part",
        "A foggy morning makes every street look new",
        "Fifty millimetres and nothing else for a whole month",
    ),
    "travel": (
        "Night train across the mountains, woke up somewhere new",
        "Got lost in a market and found the best soup of the trip",
        "Packing light is a skill I am still learning",
        "A quiet village with one bakery and no signal",
    ),
    "gaming": (
        "Beat the final boss after three evenings of trying",
        "Cozy farming game, zero stress, all the turnips",
        "Co-op night with friends, nobody read the map",
        "Speedrunning a level I used to fear",
    ),
    "books": (
        "Stayed up far too late to finish this novel",
        "Reading a history of maps and it is wonderful",
        "Second-hand bookshop haul, five for the price of one",
        "Rereading a childhood favourite, it holds up",
    ),
    "coffee": (
        "Dialled in the grinder, the espresso finally tastes sweet",
        "Pour-over on a slow Sunday morning",
        "A new roaster opened around the corner",
        "Cold brew season has begun",
    ),
    "cycling": (
        "Climbed the long hill without stopping this time",
        "Commuting by bike beats the bus every single day",
        "Fixed a flat on the roadside in record time",
        "A gravel loop through the forest, dusty and perfect",
    ),
    "gardening": (
        "The first tomatoes are turning red",
        "Planted garlic for next summer",
        "Compost is just slow cooking for the soil",
        "The basil is taking over the balcony",
    ),
    "jazz": (
        "A trio in a tiny basement club, pure magic",
        "Transcribing a solo note by note",
        "Late night, vinyl crackle, a slow ballad",
        "Modal tunes make practice feel like travel",
    ),
    "movies": (
        "Rewatched a classic and noticed a dozen new things",
        "Tiny cinema, old seats, brilliant film",
        "Documentary night: came out knowing too much about bees",
        "Soundtrack still stuck in my head",
    ),
    "science": (
        "Saw Saturn's rings through a backyard telescope",
        "Reading about how octopuses taste with their arms",
        "The physics of a spinning top is surprisingly deep",
        "Measured the speed of sound with two phones and a field",
    ),
    "art": (
        "Sketching strangers on the train again",
        "Watercolours are teaching me patience",
        "Visited a gallery of tiny sculptures",
        "Painted the same tree in every season this year",
    ),
    "football": (
        "Last-minute winner, the whole street heard us",
        "Sunday league, muddy pitch, great game",
        "Tactics board out for the derby",
        "The keeper saved two penalties, what a night",
    ),
}

# Added to some posts so that their length varies the way real posts do.
ASIDES: tuple[str, ...] = (
    "Anyone else?",
    "More on this soon.",
    "Would do it again tomorrow.",
    "It took a while to get here, and every step of the way taught me something new.",
    "Thanks to everyone who shared tips last week, they made all the difference.",
    "Not perfect yet, but getting there one small change at a time.",
    "Honestly the best part of my week, and I did not expect that at all.",
)

OPENERS: tuple[str, ...] = ("", "Today:", "Small joy:", "Note to self:", "Update:", "So,")

COMMENTS: tuple[str, ...] = (
    "Love this!",
    "So true.",
    "Where was this?",
    "Adding it to my list.",
    "Same here, every time.",
    "This made my day.",
    "Great one, thanks for sharing.",
    "How long did that take?",
    "I need to try this.",
    "Beautiful.",
)

SHARE_NOTES: tuple[str, ...] = ("Worth a look.", "This!", "Saving this one.", "")

MESSAGES: tuple[str, ...] = (
    "Morning all!",
    "Did anyone see that post about the night train?",
    "Meet up on Saturday?",
    "I'll bring coffee.",
    "Running late, five minutes.",
    "That was fun, same time next week?",
    "Has anyone read the new one yet?",
    "Photos from yesterday are up.",
    "Who's in?",
    "Count me in.",
)

ROOM_NAMES: tuple[str, ...] = (
    "Weekend plans", "Book club", "Trail crew", "Kitchen experiments", "Night owls",
    "Film club", "Study group", "Garden swap",
)  # fmt: skip

FIRST_NAMES: tuple[str, ...] = (
    "Ada", "Alan", "Grace", "Linus", "Mary", "Barbara", "Dennis", "Edsger", "Frances",
    "Guido", "Hedy", "Ivan", "Joan", "Ken", "Lin", "Margaret", "Niklaus", "Ole", "Radia",
    "Sophie", "Tim", "Ursula", "Vint", "Whitfield", "Yukihiro", "Zhang", "Anita", "Bjarne",
    "Carol", "Donald", "Elena", "Fernando", "Gwen", "Hal", "Ines", "John", "Karen", "Leslie",
)  # fmt: skip

LAST_INITIALS = "ABCDEFGHIJKLMNOPRSTVW"
