"""Fixed text pieces the sample generator wraps around the stdlib prose.

Everything here was written for this project: web boilerplate, wiki markup, Project Gutenberg
header/footer shapes (the marker lines are the real ones, since the Gutenberg cleaner must
recognise them; the licence wording is our own short paraphrase), and a few paragraphs of
non-English prose for the language filter.
"""
from __future__ import annotations

# ---------------------------------------------------------------- web (c4, fineweb) boilerplate
NAV_LINES = [
    "Home | About | Contact",
    "Home | Blog | Shop | Login",
    "Skip to main content",
    "Menu",
    "Search this site",
    "Home > Articles > Programming",
]
COOKIE_LINES = [
    "This website uses cookies to improve your experience. By continuing you agree to our use of cookies.",
    "We use cookies to personalise content. Read our privacy policy for more information.",
    "By using this site you accept our terms of use and cookie policy.",
]
JS_LINES = [
    "Please enable JavaScript in your browser to view this page.",
    "You need to have javascript enabled to use this form.",
]
CLICK_LINES = [
    "Click here to subscribe to our newsletter!",
    "Click here to read more.",
    "Click here to download the free guide.",
]
SHORT_LINES = [  # typical lines without terminal punctuation
    "Share this", "Related posts", "Leave a comment", "Posted in Uncategorized",
    "Tags: python, programming, tutorial", "Read more", "Previous post", "Next post",
    "Copyright 2019 All rights reserved", "Follow us on social media", "Sign up", "Log in",
    "Categories", "Archives", "Recent comments", "Powered by WordPress",
]
DOMAIN_WORDS = ["code", "byte", "dev", "notes", "daily", "tech", "learn", "guide", "open", "stack",
                "cloud", "data", "pixel", "river", "maple", "north", "bright", "simple", "blue",
                "garden"]
TLDS = ["com", "net", "org", "co.uk", "io", "info"]

# Our own pseudo-Latin filler with the tell-tale opening (C4 drops any page containing it).
LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. Curabitur vel nisl quis magna "
         "porta feugiat et non erat. Integer tempor velit a lacus pretium, id gravida purus "
         "volutpat. Donec at metus sed urna faucibus convallis. Praesent quis tortor ac nibh "
         "ultrices finibus vitae sit amet ante. Sed vitae arcu in augue molestie placerat.")

CODE_PAGE = """function toggleMenu(id) {
  var el = document.getElementById(id);
  if (el.style.display === "none") { el.style.display = "block"; } else { el.style.display = "none"; }
}
.nav-bar { background: #222; color: #fff; padding: 4px 8px; }
.nav-bar a:hover { text-decoration: underline; }
for (var i = 0; i < items.length; i++) { items[i].addEventListener("click", handler); }
If the menu does not open, call toggleMenu({ id: "main" }) from the browser console.
The theme defines styles such as .nav-bar { color: #fff } for every page of the site."""

# ---------------------------------------------------------------- non-English paragraphs
NON_ENGLISH = {
    "de": [
        "Die Bibliothek der Stadt bleibt im Sommer an jedem Wochentag bis acht Uhr abends geöffnet. "
        "Wer ein Buch verlängern möchte, kann dies am Schalter oder über das Telefon erledigen.",
        "Gestern hat es den ganzen Tag geregnet, deshalb sind wir zu Hause geblieben und haben "
        "gemeinsam gekocht. Am Abend kamen noch die Nachbarn vorbei, und wir haben lange gespielt.",
        "Das Programm liest zuerst die Eingabedatei, prüft jede Zeile und schreibt danach eine "
        "Zusammenfassung. Fehlerhafte Zeilen werden mit ihrer Nummer gemeldet.",
    ],
    "fr": [
        "Le marché du samedi matin attire beaucoup de monde, surtout quand le soleil est au rendez-vous. "
        "On y trouve des fromages, du pain frais et des légumes venus des fermes voisines.",
        "Pour installer le logiciel, il suffit de télécharger l'archive, de la décompresser puis de "
        "lancer le programme d'installation. La documentation explique chaque étape en détail.",
        "Nous avons visite le musée pendant tout l'après-midi et nous sommes repartis avec l'envie "
        "d'y revenir bientôt, car il restait encore plusieurs salles à découvrir.",
    ],
    "es": [
        "La reunión se celebrará el jueves a las diez en la sala principal del edificio. Se ruega a "
        "todos los participantes que lleguen con unos minutos de antelación.",
        "El río atraviesa el valle de norte a sur y, en primavera, su caudal crece tanto que los "
        "caminos de la orilla quedan cubiertos por el agua durante varias semanas.",
        "Cada función recibe una lista de números y devuelve la suma de los elementos positivos. "
        "Si la lista está vacía, el resultado es cero.",
    ],
    "it": [
        "La piazza del paese si riempie di gente ogni sera d'estate, quando i bambini giocano vicino "
        "alla fontana e gli anziani chiacchierano seduti sulle panchine.",
        "Per completare la domanda bisogna allegare una copia del documento di identità e compilare "
        "tutti i campi obbligatori del modulo.",
        "Il treno per la città parte ogni mezz'ora dalla stazione centrale. Nei giorni festivi il "
        "servizio è ridotto e conviene controllare l'orario prima di uscire di casa.",
    ],
    "nl": [
        "Het weer was zo mooi dat we besloten om met de fiets naar het strand te gaan. Onderweg "
        "hebben we bij een klein café koffie gedronken.",
        "De gemeente heeft aangekondigd dat de nieuwe brug volgend jaar klaar zal zijn, zodat het "
        "verkeer in het centrum minder druk wordt.",
        "Mijn grootmoeder bakt elke zondag een appeltaart voor de hele familie. Iedereen komt dan "
        "langs, en de kinderen spelen in de tuin tot het donker wordt.",
    ],
    "pt": [
        "A padaria da esquina abre muito cedo e, antes das sete horas, já há uma fila de pessoas a "
        "espera do primeiro pão da manhã.",
        "O relatório mostra que o número de visitantes aumentou durante o verão, sobretudo nas "
        "cidades do litoral e nas regiões de montanha.",
        "O programa guarda uma cópia de segurança todas as noites. Se algum ficheiro se perder, "
        "basta escolher a data certa e restaurar a versão anterior.",
    ],
}

# ---------------------------------------------------------------- wikipedia
WIKI_HEADINGS = ["History", "Overview", "Design", "Usage", "Implementation", "Behaviour",
                 "Background", "Details", "Reception", "Limitations", "Examples", "Variants"]
WIKI_CATEGORIES = ["Computer programming", "Software design", "Data structures", "Algorithms",
                   "Programming languages", "Computing terminology"]

# ---------------------------------------------------------------- gutenberg
FIRST_NAMES = ["Margaret", "Thomas", "Eleanor", "William", "Harriet", "Edward", "Louisa", "Henry",
               "Charlotte", "George", "Amelia", "Frederick"]
LAST_NAMES = ["Ashdown", "Merriweather", "Holloway", "Pemberton", "Fairbanks", "Whitcombe",
              "Ravensworth", "Caldwell", "Thornbury", "Ellsworth", "Kingsley", "Bramwell"]
TITLE_WORDS = ["Garden", "Letters", "Voyage", "House", "Winter", "River", "Lantern", "Orchard",
               "Harbour", "Journey", "Chronicle", "Meadow", "Tower", "Companion"]

# The licence paragraphs are our own short paraphrase, hard-wrapped like the originals.
PG_LICENSE_HEAD = """\
This eBook is for the use of anyone anywhere at no cost and with almost
no restrictions whatsoever. You may copy it, give it away or re-use it
under the terms of the Project Gutenberg License included with this
eBook or online at www.gutenberg.org"""

PG_LICENSE_BODY = """\
THE FULL PROJECT GUTENBERG LICENSE
PLEASE READ THIS BEFORE YOU DISTRIBUTE OR USE THIS WORK

Section 1. General Terms of Use and Redistributing Project Gutenberg-tm
electronic works

1.A. By reading or using any part of this Project Gutenberg-tm electronic
work, you indicate that you have read and accept the terms of this
license. If you do not agree, you must stop using the work and destroy
all copies in your possession.

1.B. "Project Gutenberg" is a registered trademark. It may only be used
on or associated in any way with an electronic work by people who agree
to be bound by the terms of this agreement.

Section 2. Information about the Mission of Project Gutenberg-tm

Project Gutenberg-tm is synonymous with the free distribution of
electronic works in formats readable by the widest variety of computers
including obsolete, old, middle-aged and new computers.

Section 3. Information about the Project Gutenberg Literary Archive
Foundation

The Foundation is a non profit educational corporation. Contributions
are tax deductible to the full extent permitted by law.

Most people start at our Web site which has the main PG search
facility: www.gutenberg.org"""

PG_SMALL_PRINT = """\
**Welcome To The World of Free Plain Vanilla Electronic Texts**

**Etexts Readable By Both Humans and By Computers, Since 1971**

*****These Etexts Were Prepared By Thousands of Volunteers!*****

**The Legal Small Print**

(Three Pages)

***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***
This notice is here because the people who prepared this etext were told
to include one. It says, in short, that the etext comes with no promise
of any kind, that you may copy it for free as long as this notice stays
with it, and that nobody who worked on it can be blamed for its faults.

*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.02/11/02*END*"""
