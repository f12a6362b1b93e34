"""The word tables the synthetic corpus is drawn from (`agentmem.adaptation.corpus`).

Data, not code: names, cities, phrases, the objects tools act on, and the requests that need
no tool. Changing a table changes every corpus drawn from it (and so the shipped adaptation's
recipe): add at the end of a list rather than in the middle.
"""

from __future__ import annotations

FIRST = [
    "Ana",
    "Ben",
    "Chloe",
    "Dmitri",
    "Elif",
    "Farah",
    "Goran",
    "Hana",
    "Ivan",
    "Jonas",
    "Keiko",
    "Luis",
    "Maya",
    "Nils",
    "Olga",
    "Pedro",
    "Quinn",
    "Rosa",
    "Sami",
    "Tariq",
    "Uma",
    "Vera",
    "Wen",
    "Yusuf",
    "Zoe",
]


LAST = [
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Kowalski",
    "Haddad",
    "Silva",
    "Novak",
    "Brennan",
    "Castillo",
    "Ivanova",
    "Mensah",
    "Schulz",
    "Petrov",
    "Rossi",
    "Nakamura",
    "Ferreira",
    "Dubois",
]


CITIES = [
    "Porto",
    "Kraków",
    "Valencia",
    "Bruges",
    "Tallinn",
    "Graz",
    "Split",
    "Bergen",
    "Lyon",
    "Gdańsk",
    "Bologna",
    "Seville",
    "Riga",
    "Ghent",
    "Aarhus",
    "Basel",
    "Zagreb",
    "Ljubljana",
    "Turin",
    "Leeds",
    "Denver",
    "Austin",
    "Quito",
    "Accra",
    "Perth",
    "Kyoto",
    "Pune",
    "Manila",
    "Busan",
    "Tbilisi",
]


WORDS = [
    "blue",
    "river",
    "quiet",
    "garden",
    "winter",
    "copper",
    "maple",
    "harbor",
    "silent",
    "golden",
    "paper",
    "stone",
    "summer",
    "velvet",
    "orbit",
    "cedar",
    "lantern",
    "meadow",
    "north",
    "echo",
]


TOPICS = [
    "vegan lasagna",
    "jazz piano",
    "mountain biking",
    "solar panels",
    "sourdough bread",
    "chess openings",
    "python decorators",
    "roman history",
    "bird watching",
    "home espresso",
    "knitting patterns",
    "electric scooters",
    "tax deductions",
    "yoga for beginners",
    "board games",
    "street photography",
]


STREETS = ["Baker Street", "Elm Avenue", "Harbour Road", "Mill Lane", "Station Road", "Oak Drive", "King Street"]


LANGUAGES = ["Spanish", "German", "Japanese", "Portuguese", "Korean", "Italian", "Dutch", "Turkish", "Polish"]


# Objects a tool acts on: (name slug, noun phrase, verbs, parameters it may take). The
# first parameter listed is always required. Objects alternate between the two splits.
OBJECTS: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = [
    ("ferry_ticket", "a ferry ticket", ("book", "cancel"), ("origin", "destination", "date", "guests", "express")),
    ("parcel", "a parcel", ("track", "ship"), ("reference", "destination", "weight_kg", "express")),
    ("table", "a restaurant table", ("reserve", "find"), ("city", "guests", "time", "date", "min_rating")),
    ("playlist", "a playlist", ("create", "share"), ("title", "public", "limit", "topic")),
    ("invoice", "an invoice", ("issue", "export"), ("recipient", "amount", "date", "format")),
    ("podcast", "podcast episodes", ("search", "download"), ("topic", "limit", "language", "sort_by")),
    ("gym_class", "a gym class", ("book", "find"), ("city", "date", "time", "minutes")),
    ("apartment", "an apartment", ("search", "rent"), ("city", "max_price", "guests", "nights", "sort_by")),
    ("translation", "a translation", ("order", "review"), ("language", "reference", "priority")),
    ("bike", "a bike", ("rent", "locate"), ("city", "minutes", "size")),
    ("recipe", "recipes", ("search", "save"), ("topic", "guests", "minutes", "min_rating")),
    ("support_ticket", "a support ticket", ("open", "escalate"), ("title", "priority", "reference")),
    ("route", "a route", ("plan", "share"), ("origin", "destination", "mode", "time")),
    ("book_loan", "a library book", ("borrow", "renew"), ("title", "person", "date")),
    ("photo_album", "a photo album", ("create", "print"), ("title", "size", "quantity", "public")),
    ("concert", "concert tickets", ("buy", "find"), ("city", "date", "quantity", "max_price")),
    ("doctor_visit", "a doctor visit", ("schedule", "cancel"), ("person", "date", "time", "reference")),
    ("report", "a report", ("generate", "download"), ("topic", "format", "year", "limit")),
    ("car_wash", "a car wash", ("book", "cancel"), ("address", "date", "time", "size")),
    ("gift_card", "a gift card", ("send", "redeem"), ("recipient", "amount", "reference")),
    ("meeting_room", "a meeting room", ("reserve", "release"), ("city", "date", "time", "guests", "minutes")),
    ("news", "news articles", ("fetch", "summarize"), ("topic", "language", "limit", "sort_by")),
    ("grocery_order", "a grocery order", ("place", "track"), ("address", "amount", "express", "reference")),
    ("museum_pass", "a museum pass", ("buy", "reserve"), ("city", "date", "guests", "public")),
    ("moving_van", "a moving van", ("hire", "quote"), ("origin", "destination", "date", "size")),
    ("tutor", "a tutor", ("find", "hire"), ("topic", "language", "max_price", "minutes")),
    ("laundry_pickup", "a laundry pickup", ("schedule", "cancel"), ("address", "date", "time", "weight_kg")),
    ("ebook", "an ebook", ("buy", "lend"), ("title", "recipient", "format")),
    ("hiking_trail", "hiking trails", ("search", "rate"), ("city", "minutes", "min_rating", "limit")),
    ("parking_spot", "a parking spot", ("reserve", "find"), ("address", "date", "time", "minutes", "max_price")),
    ("pet_sitter", "a pet sitter", ("book", "find"), ("city", "nights", "max_price", "person")),
    ("charging_station", "charging stations", ("locate", "reserve"), ("city", "mode", "limit", "time")),
    ("wine", "wine bottles", ("order", "rate"), ("year", "quantity", "max_price", "express")),
    ("course", "an online course", ("enroll_in", "find"), ("topic", "language", "max_price", "sort_by")),
    ("boat_tour", "a boat tour", ("book", "cancel"), ("city", "date", "time", "guests")),
    ("backup", "a backup", ("start", "restore"), ("title", "format", "date", "priority")),
    ("tailor_fitting", "a tailor fitting", ("book", "move"), ("person", "date", "time", "size")),
    ("taxi_ride", "a taxi ride", ("order", "price"), ("origin", "address", "time", "guests")),
    ("flower_delivery", "a flower delivery", ("order", "track"), ("recipient", "address", "date", "amount")),
    ("language_exam", "a language exam", ("register_for", "find"), ("language", "city", "date", "person")),
    ("storage_unit", "a storage unit", ("rent", "quote"), ("city", "size", "nights", "max_price")),
    ("volunteer_shift", "a volunteer shift", ("sign_up_for", "swap"), ("city", "date", "time", "person")),
    ("blood_test", "a blood test", ("book", "fetch"), ("person", "date", "reference")),
    ("poll", "a poll", ("create", "close"), ("title", "minutes", "public", "limit")),
    ("car_service", "a car service", ("schedule", "quote"), ("address", "date", "reference", "priority")),
    ("quiz", "a quiz", ("generate", "grade"), ("topic", "quantity", "language", "format")),
    ("seat_upgrade", "a seat upgrade", ("request", "price"), ("reference", "person", "amount")),
    ("newsletter", "a newsletter", ("subscribe_to", "draft"), ("topic", "recipient", "language", "priority")),
    ("sauna_slot", "a sauna slot", ("book", "release"), ("city", "date", "time", "guests", "minutes")),
    ("donation", "a donation", ("make", "cancel"), ("recipient", "amount", "public", "reference")),
    ("furniture_assembly", "furniture assembly", ("book", "quote"), ("address", "date", "quantity", "express")),
    ("karaoke_room", "a karaoke room", ("reserve", "find"), ("city", "guests", "time", "minutes")),
    ("tire_change", "a tire change", ("schedule", "price"), ("address", "size", "date", "time")),
    ("tax_return", "a tax return", ("file", "download"), ("person", "year", "format", "reference")),
    ("ski_rental", "ski equipment", ("rent", "return"), ("city", "size", "nights", "person")),
    ("lecture_notes", "lecture notes", ("share", "export"), ("title", "recipient", "format", "public")),
    ("window_cleaning", "window cleaning", ("book", "quote"), ("address", "date", "size", "max_price")),
    ("observatory_visit", "an observatory visit", ("plan", "book"), ("city", "date", "time", "guests")),
    ("lost_item", "a lost item report", ("file", "search"), ("title", "city", "date", "reference")),
    ("chess_match", "a chess match", ("arrange", "cancel"), ("person", "date", "time", "minutes")),
]


OPENERS = ["", "Please ", "Can you ", "Could you ", "I need you to ", "I'd like to ", "Go ahead and "]


QUESTION_OPENERS = {"Can you ", "Could you "}


# Free text copied from the request: the values a small model most often paraphrases,
# truncates or invents. Adaptation split only (the benchmarks' tools stay as they were).
TASKS = [
    "water the plants",
    "call the landlord",
    "pick up the dry cleaning",
    "renew my passport",
    "buy a birthday card for Nora",
    "take the recycling out",
    "send the slides to the team",
    "book a dentist check-up",
    "pay the electricity bill",
    "charge the camera batteries",
    "return the library books",
    "defrost the freezer",
    "check the tyre pressure",
    "practice the speech",
    "order more printer ink",
    "feed the neighbour's cat",
    "back up the laptop",
    "cancel the gym trial",
    "bring the blue folder",
    "stretch for ten minutes",
    "print the boarding passes",
    "fix the squeaky door",
]


MESSAGES = [
    "running ten minutes late",
    "the meeting moved to room 4",
    "dinner is at my place tonight",
    "can you bring the charger",
    "the package arrived safely",
    "happy anniversary to you both",
    "please review the draft by Friday",
    "the train is cancelled, taking the bus",
    "thanks for the lovely evening",
    "the keys are under the mat",
    "call me when you land",
    "the report is ready for sign-off",
    "see you at the north entrance",
    "bring warm clothes for the hike",
]


ITEMS = [
    "oat milk",
    "free-range eggs",
    "sourdough loaf",
    "green tea",
    "dish soap",
    "cherry tomatoes",
    "peanut butter",
    "AA batteries",
    "basmati rice",
    "paper towels",
    "greek yogurt",
    "dark chocolate",
]


LABELS = [
    "take the vitamins",
    "leave for the airport",
    "stand-up meeting",
    "start the laundry",
    "pick up the kids",
    "check the oven",
    "water break",
    "call grandma",
]


FREE_TEXT_OBJECTS: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = [
    ("todo_item", "a to-do item", ("add", "complete"), ("task", "date", "priority", "time")),
    ("chat_message", "a chat message", ("send", "schedule"), ("message", "recipient", "time")),
    ("sticky_note", "a sticky note", ("post", "pin"), ("message", "title", "public")),
    ("shopping_item", "a shopping list item", ("add", "remove"), ("item", "quantity", "express")),
    ("alarm", "an alarm", ("set", "snooze"), ("time", "label", "minutes")),
    ("calendar_task", "a calendar task", ("create", "move"), ("task", "date", "time", "minutes")),
    ("team_announcement", "a team announcement", ("post", "draft"), ("message", "time", "priority")),
    ("errand", "an errand", ("plan", "log"), ("task", "address", "date")),
]


# Requests that need no tool, answered in words: small talk and questions the model can
# answer itself. None touches a RESERVED_TOPIC nor asks for a computation a tool would do
# (a conversion, a sum), so that they teach when *not* to emit a memory token without
# teaching that requests shaped like tool calls are answered in words.
CAPITALS = {
    "France": "Paris",
    "Japan": "Tokyo",
    "Kenya": "Nairobi",
    "Canada": "Ottawa",
    "Peru": "Lima",
    "Norway": "Oslo",
    "Egypt": "Cairo",
    "Australia": "Canberra",
    "Vietnam": "Hanoi",
    "Poland": "Warsaw",
    "Chile": "Santiago",
    "Ireland": "Dublin",
}


MEANINGS = {
    "ephemeral": "lasting a very short time",
    "candid": "honest and direct",
    "frugal": "careful not to spend much",
    "verbose": "using more words than needed",
    "serene": "calm and peaceful",
    "tedious": "long and boring",
    "meticulous": "very careful about details",
    "resilient": "able to recover quickly from difficulty",
}


OPPOSITES = {"ancient": "modern", "generous": "stingy", "narrow": "wide", "fragile": "sturdy", "shallow": "deep"}


SMALL_TALK: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (
        ("Hi!", "Hello there.", "Hey, good morning!", "Hi, how are you?", "Good evening!"),
        ("Hello! How can I help you today?", "Hi! What can I do for you?"),
    ),
    (
        ("Thanks!", "Thank you, that's all.", "Great, thanks a lot.", "Perfect, thank you!", "Cheers, that helps."),
        ("You're welcome!", "Glad I could help.", "Any time. Let me know if you need anything else."),
    ),
    (
        ("Who are you?", "What are you?", "Are you a person?"),
        ("I'm an assistant that can answer questions and use the tools I have learned.",),
    ),
    (
        ("What can you do?", "How can you help me?", "What kind of things can you do for me?"),
        ("I can answer questions and carry out requests with the tools I have learned. Just tell me what you need.",),
    ),
    (
        ("Tell me a joke.", "Make me laugh.", "Do you know any jokes?"),
        (
            "Why did the scarecrow win an award? Because he was outstanding in his field.",
            "I told my computer I needed a break, and it said: no problem, I'll go to sleep.",
        ),
    ),
    (
        ("Never mind.", "Forget it, I'll do it later.", "Actually, cancel that thought."),
        ("No problem. I'm here whenever you need me.", "Okay! Just ask when you're ready."),
    ),
)
