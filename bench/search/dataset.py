"""Deterministic synthetic dataset of the search benchmark: French Patients and their Observations.

Every resource is a pure function of (seed, kind, index): the loader can write any range of it in
any order, from any number of processes, and the query driver can tell which Patient an
Observation refers to and which code it carries without reading anything back.

  Patient/p000001 .. Patient/pNNNNNN   name, gender, birthDate, INS identifier, home address
  Observation/o0000001 ..              status final, one of LOINC_CODES (skewed; 72514-3 is 5 %),
                                       subject a uniformly drawn Patient, effectiveDateTime in
                                       2023-01-01 .. 2026-10-31 (Europe/Paris offsets),
                                       valueQuantity in UCUM units

Resources are produced as JSON text (templates rather than json.dumps: this is the loader's hot path);
none of the fixed strings below needs JSON escaping.
"""

import bisect
import datetime

INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
PAIN_CODE = "72514-3"

_M64 = (1 << 64) - 1


def _mix(x):
    """splitmix64 finaliser: a well-spread 64-bit value from any 64-bit input."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


class Draw:
    """A stream of small random integers from 64-bit words, for one resource."""

    __slots__ = ("_key", "_n", "_word")

    def __init__(self, seed, kind, index):
        self._key = _mix((seed & 0xFFFFFFFF) << 32 ^ kind << 28 ^ index)
        self._n = 0
        self._word = 0

    def below(self, n):
        """An integer in [0, n). Each word serves several draws while it holds enough bits."""
        if self._word < n << 20:
            self._n += 1
            self._word = _mix(self._key + self._n)
        self._word, r = divmod(self._word, n)
        return r


# ---- Observations ---------------------------------------------------------------------------
# (code, display, category, unit (UCUM code), low, high, decimals, weight in parts per 10,000)
# Weights: a chronic-pain network's record, vital signs and survey scores first, then common
# laboratory results, then rarer ones. The pain score 72514-3 is 5 % of all Observations.
LOINC_CODES = [
    (PAIN_CODE, "Pain severity - 0-10 verbal numeric rating [Score] - Reported", "survey", "{score}", 0, 10, 0, 500),
    ("8867-4", "Heart rate", "vital-signs", "/min", 48, 115, 0, 495),
    ("8480-6", "Systolic blood pressure", "vital-signs", "mm[Hg]", 95, 175, 0, 490),
    ("8462-4", "Diastolic blood pressure", "vital-signs", "mm[Hg]", 55, 105, 0, 490),
    ("29463-7", "Body weight", "vital-signs", "kg", 42, 130, 1, 460),
    ("8310-5", "Body temperature", "vital-signs", "Cel", 35.8, 38.9, 1, 430),
    ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "vital-signs", "%", 90, 100, 0, 420),
    ("9279-1", "Respiratory rate", "vital-signs", "/min", 11, 26, 0, 380),
    ("38208-5", "Pain severity - Reported", "survey", "{score}", 0, 10, 0, 380),
    ("39156-5", "Body mass index (BMI) [Ratio]", "vital-signs", "kg/m2", 17, 42, 1, 350),
    ("8302-2", "Body height", "vital-signs", "cm", 148, 198, 0, 300),
    ("38214-3", "Pain severity [Score] Visual analog score", "survey", "{score}", 0, 10, 1, 300),
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "laboratory", "mg/dL", 65, 210, 0, 290),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "laboratory", "g/dL", 9, 17.5, 1, 280),
    ("14682-9", "Creatinine [Moles/volume] in Serum or Plasma", "laboratory", "umol/L", 45, 160, 0, 270),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "laboratory", "mmol/L", 3.2, 5.4, 1, 260),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "laboratory", "mmol/L", 131, 147, 0, 260),
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "laboratory", "10*3/uL", 3.5, 13, 1, 250),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", "laboratory", "10*3/uL", 140, 420, 0, 250),
    ("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", "laboratory", "%", 33, 52, 1, 240),
    ("44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]", "survey", "{score}", 0, 27, 0, 220),
    ("70274-6", "Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]", "survey", "{score}", 0, 21, 0, 200),
    ("1988-5", "C reactive protein [Mass/volume] in Serum or Plasma", "laboratory", "mg/L", 0.5, 80, 1, 200),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "laboratory", "%", 4.8, 10.5, 1, 190),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "laboratory", "mg/dL", 130, 290, 0, 180),
    ("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "laboratory", "mg/dL", 50, 380, 0, 170),
    ("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "laboratory", "mg/dL", 30, 95, 0, 160),
    ("13457-7", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation", "laboratory", "mg/dL", 60, 210, 0, 160),
    ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "laboratory", "U/L", 7, 90, 0, 150),
    ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "laboratory", "U/L", 9, 80, 0, 150),
    ("55758-7", "Patient Health Questionnaire 2 item (PHQ-2) total score [Reported]", "survey", "{score}", 0, 6, 0, 135),
    ("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "laboratory", "m[IU]/L", 0.3, 6.5, 2, 100),
    ("2075-0", "Chloride [Moles/volume] in Serum or Plasma", "laboratory", "mmol/L", 94, 110, 0, 90),
    ("6301-6", "INR in Platelet poor plasma by Coagulation assay", "laboratory", "{INR}", 0.9, 3.8, 1, 90),
    ("2028-9", "Carbon dioxide, total [Moles/volume] in Serum or Plasma", "laboratory", "mmol/L", 20, 32, 0, 80),
    ("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma", "laboratory", "U/L", 35, 180, 0, 80),
    ("2324-2", "Gamma glutamyl transferase [Enzymatic activity/volume] in Serum or Plasma", "laboratory", "U/L", 8, 150, 0, 70),
    ("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "laboratory", "mg/dL", 0.2, 2.1, 1, 70),
    ("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "laboratory", "mg/dL", 8.3, 10.6, 1, 60),
    ("75626-2", "Total score [AUDIT-C]", "survey", "{score}", 0, 12, 0, 60),
    ("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "laboratory", "g/dL", 2.9, 5.1, 1, 50),
    ("2276-4", "Ferritin [Mass/volume] in Serum or Plasma", "laboratory", "ng/mL", 12, 450, 0, 50),
    ("4537-7", "Erythrocyte sedimentation rate by Westergren method", "laboratory", "mm/h", 2, 70, 0, 40),
    ("1989-3", "25-Hydroxyvitamin D3+25-Hydroxyvitamin D2 [Mass/volume] in Serum or Plasma", "laboratory", "ng/mL", 8, 60, 0, 40),
    ("8280-0", "Waist Circumference at umbilicus by Tape measure", "vital-signs", "cm", 62, 135, 0, 30),
    ("5902-2", "Prothrombin time (PT)", "laboratory", "s", 10, 24, 1, 30),
    ("2157-6", "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma", "laboratory", "U/L", 30, 400, 0, 20),
    ("30522-7", "C reactive protein [Mass/volume] in Serum or Plasma by High sensitivity method", "laboratory", "mg/L", 0.1, 10, 2, 15),
    ("2132-9", "Cobalamin (Vitamin B12) [Mass/volume] in Serum or Plasma", "laboratory", "pg/mL", 150, 1100, 0, 10),
    ("2498-4", "Iron [Mass/volume] in Serum or Plasma", "laboratory", "ug/dL", 35, 190, 0, 5),
]
assert sum(c[7] for c in LOINC_CODES) == 10000, sum(c[7] for c in LOINC_CODES)
RARE_CODE = "2498-4"  # 0.05 %: 1000 Observations at 2M
CODE_SHARE = {c[0]: c[7] / 10000 for c in LOINC_CODES}

_CODE_CUM = []
_acc = 0
for _c in LOINC_CODES:
    _acc += _c[7]
    _CODE_CUM.append(_acc)

_CATEGORY_DISPLAY = {"vital-signs": "Vital Signs", "survey": "Survey", "laboratory": "Laboratory"}
_OBS_PREFIX = []
for _code, _display, _cat, _unit, _lo, _hi, _dec, _w in LOINC_CODES:
    _OBS_PREFIX.append(
        '","status":"final","category":[{"coding":[{"system":"' + CATEGORY_SYSTEM + '","code":"' + _cat
        + '","display":"' + _CATEGORY_DISPLAY[_cat] + '"}]}],"code":{"coding":[{"system":"' + LOINC + '","code":"'
        + _code + '","display":"' + _display + '"}]},"subject":{"reference":"Patient/')
_OBS_UNIT = ['"unit":"' + c[3] + '","system":"' + UCUM + '","code":"' + c[3] + '"}}' for c in LOINC_CODES]

FIRST_DAY = datetime.date(2023, 1, 1)
LAST_DAY = datetime.date(2026, 10, 31)
_DAYS = (LAST_DAY - FIRST_DAY).days + 1
_DATES = [(FIRST_DAY + datetime.timedelta(days=d)).isoformat() for d in range(_DAYS)]


def _paris_offset(day):
    """The Europe/Paris UTC offset of a day: +02:00 from the last Sunday of March to the last
    Sunday of October (the change hour is ignored: the times drawn are 07:00-19:59)."""
    def last_sunday(year, month):
        d = datetime.date(year, month, 31)
        return d - datetime.timedelta(days=(d.weekday() + 1) % 7)
    return "+02:00" if last_sunday(day.year, 3) <= day < last_sunday(day.year, 10) else "+01:00"


_OFFSETS = [_paris_offset(FIRST_DAY + datetime.timedelta(days=d)) for d in range(_DAYS)]

OBSERVATION = 2
PATIENT = 1


def observation_id(n):
    """Id of the n-th Observation, n from 1."""
    return "o%07d" % n


def patient_id(n):
    return "p%06d" % n


def observation_facts(seed, n, patients):
    """(patient number, index in LOINC_CODES, day index, minute of day, value draw) of Observation n."""
    d = Draw(seed, OBSERVATION, n)
    patient = 1 + d.below(patients)
    code = bisect.bisect_right(_CODE_CUM, d.below(10000))
    day = d.below(_DAYS)
    minute = 7 * 60 + d.below(13 * 60)
    value = d.below(1 << 20)
    return patient, code, day, minute, value


def observation_json(seed, n, patients):
    patient, ci, day, minute, v = observation_facts(seed, n, patients)
    c = LOINC_CODES[ci]
    lo, hi, dec = c[4], c[5], c[6]
    x = lo + (hi - lo) * v / (1 << 20)
    value = str(int(round(x))) if dec == 0 else "%.*f" % (dec, x)
    return ('{"resourceType":"Observation","id":"' + observation_id(n) + _OBS_PREFIX[ci] + patient_id(patient)
            + '"},"effectiveDateTime":"' + _DATES[day] + "T%02d:%02d:00" % divmod(minute, 60) + _OFFSETS[day]
            + '","valueQuantity":{"value":' + value + "," + _OBS_UNIT[ci])


def observation_code(seed, n, patients):
    return LOINC_CODES[observation_facts(seed, n, patients)[1]][0]


# ---- Patients ---------------------------------------------------------------------------------
FAMILY_NAMES = (
    "Martin Bernard Thomas Petit Robert Richard Durand Dubois Moreau Laurent Simon Michel Lefèvre Leroy Roux "
    "David Bertrand Morel Fournier Girard Bonnet Dupont Lambert Fontaine Rousseau Vincent Muller Faure André "
    "Mercier Blanc Guérin Boyer Garnier Chevalier François Legrand Gauthier Garcia Perrin Robin Clément Morin "
    "Nicolas Henry Roussel Mathieu Gautier Masson Marchand Duval Denis Dumont Marie Lemaire Noël Meyer Dufour "
    "Meunier Brun Blanchard Giraud Joly Rivière Lucas Brunet Gaillard Barbier Arnaud Martinez Gérard Roche "
    "Renard Schmitt Roy Leroux Colin Vidal Caron Picard Roger Fabre Aubert Lemoine Renaud Dumas Lacroix Olivier "
    "Philippe Bourgeois Pierre Benoît Rey Leclerc Payet Rolland Leclercq Guillaume Lecomte Lopez Jean Dupuy "
    "Guillot Hubert Berger Carpentier Sanchez Dupuis Moulin Louis Deschamps Huet Vasseur Perez Boucher Fleury "
    "Royer Klein Jacquet Adam Paris Poirier Marty Aubry Guyot Carré Charles Renault Charpentier Ménard Maillard "
    "Baron Bertin Bailly Hervé Schneider Fernandez Collet Léger Bouvier Julien Prévost Millet Perrot Daniel "
    "Cousin Germain Breton Besson Langlois Rémy Pelletier Lévêque Perrier Leblanc Barré Lebrun Marchal Weber "
    "Mallet Hamon Boulanger Jacob Monnier Michaud Rodriguez Guichard Gillet Étienne Grondin Poulain Tessier "
    "Chevallier Collin Chauvin Bouchet Gay Lemaître Bénard Maréchal Humbert Reynaud Antoine Hoarau Perret "
    "Barthélémy Cordier Pichon Lejeune Gilbert Lamy Delaunay Pasquier Carlier Laporte Béranger"
).split() + ["Le Gall", "Le Goff", "Le Roux", "Da Silva"]
FEMALE_NAMES = (
    "Marie Nathalie Isabelle Sylvie Catherine Françoise Christine Monique Valérie Sandrine Véronique Céline "
    "Stéphanie Aurélie Émilie Julie Camille Léa Manon Chloé Inès Zoé Anaïs Océane Mélanie Hélène Agnès Jeanne "
    "Noémie Maëlle Clémence Élodie Laëtitia Bérénice Gaëlle Josiane Geneviève Thérèse Brigitte Élise Léonie Anaëlle"
).split()
MALE_NAMES = (
    "Jean Pierre Michel André Philippe Alain Bernard Jacques Daniel Patrick Nicolas Christophe Stéphane Frédéric "
    "Sébastien Julien Jérôme Thomas Antoine Maxime Hugo Lucas Théo Nathan Léo Gabriel Raphaël Noé Loïc Gaël "
    "Benoît Rémi Grégoire Hervé François Mathéo Timothée Joël Aurélien Cédric Anaël Jérémy"
).split()
# (city, postal code, relative weight)
CITIES = [
    ("Paris", "75011", 60), ("Marseille", "13005", 28), ("Lyon", "69003", 25), ("Toulouse", "31000", 20),
    ("Nice", "06000", 14), ("Nantes", "44000", 13), ("Montpellier", "34000", 13), ("Strasbourg", "67000", 12),
    ("Bordeaux", "33000", 12), ("Lille", "59000", 10), ("Rennes", "35000", 10), ("Reims", "51100", 8),
    ("Saint-Étienne", "42000", 8), ("Le Havre", "76600", 7), ("Toulon", "83000", 7), ("Grenoble", "38000", 7),
    ("Dijon", "21000", 7), ("Angers", "49000", 6), ("Nîmes", "30000", 6), ("Villeurbanne", "69100", 6),
    ("Clermont-Ferrand", "63000", 6), ("Le Mans", "72000", 6), ("Aix-en-Provence", "13100", 6),
    ("Brest", "29200", 6), ("Tours", "37000", 6), ("Amiens", "80000", 5), ("Limoges", "87000", 5),
    ("Annecy", "74000", 5), ("Perpignan", "66000", 5), ("Besançon", "25000", 5), ("Orléans", "45000", 5),
    ("Metz", "57000", 5), ("Rouen", "76000", 5), ("Mulhouse", "68100", 4), ("Caen", "14000", 4),
    ("Nancy", "54000", 4), ("Argenteuil", "95100", 4), ("Montreuil", "93100", 4), ("Roubaix", "59100", 3),
    ("Créteil", "94000", 3), ("Évry-Courcouronnes", "91000", 3), ("Châteauroux", "36000", 2),
    ("Béziers", "34500", 2), ("Quimper", "29000", 2), ("Troyes", "10000", 2), ("Périgueux", "24000", 2),
]
STREETS = [
    "rue Victor-Hugo", "avenue Jean-Jaurès", "rue de la République", "place de la Mairie", "rue Pasteur",
    "boulevard Gambetta", "rue des Écoles", "chemin des Vignes", "allée des Tilleuls", "rue du Général-de-Gaulle",
    "impasse des Églantines", "rue Émile-Zola", "avenue de la Gare", "rue Jules-Ferry", "quai des Célestins",
    "rue de l'Église", "route de Besançon", "rue des Prés", "rue Léon-Blum", "cours Mirabeau",
]

_FAMILY_CUM = []
_acc = 0
for _r in range(len(FAMILY_NAMES)):
    _acc += 100000 // (_r + 12)  # Zipf-like: Martin about 8 times as frequent as the last names
    _FAMILY_CUM.append(_acc)
_CITY_CUM = []
_acc = 0
for _c in CITIES:
    _acc += _c[2]
    _CITY_CUM.append(_acc)

FIRST_BIRTH = datetime.date(1930, 1, 1)
_BIRTH_DAYS = (datetime.date(2019, 12, 31) - FIRST_BIRTH).days + 1


def patient_facts(seed, n):
    d = Draw(seed, PATIENT, n)
    family = FAMILY_NAMES[bisect.bisect_right(_FAMILY_CUM, d.below(_FAMILY_CUM[-1]))]
    g = d.below(1000)
    gender = "female" if g < 510 else "male" if g < 995 else "other" if g < 998 else "unknown"
    names = FEMALE_NAMES if gender == "female" else MALE_NAMES if gender == "male" else FEMALE_NAMES + MALE_NAMES
    given = [names[d.below(len(names))]]
    if d.below(3) == 0:
        second = names[d.below(len(names))]
        if second != given[0]:
            given.append(second)
    birth = FIRST_BIRTH + datetime.timedelta(days=d.below(_BIRTH_DAYS))
    city, postal, _ = CITIES[bisect.bisect_right(_CITY_CUM, d.below(_CITY_CUM[-1]))]
    line = "%d %s" % (1 + d.below(120), STREETS[d.below(len(STREETS))])
    # INS (NIR shape): sex, year, month, department, then 6 digits unique per Patient.
    sex = "2" if gender == "female" or (gender != "male" and d.below(2)) else "1"
    unique = (n * 7919 + 104729) % 1000000  # a bijection of 0..999999
    ins = "%s%02d%02d%s%06d" % (sex, birth.year % 100, birth.month, postal[:2], unique)
    return {"family": family, "given": given, "gender": gender, "birthDate": birth.isoformat(),
            "city": city, "postalCode": postal, "line": line, "ins": ins}


def patient_json(seed, n):
    f = patient_facts(seed, n)
    return ('{"resourceType":"Patient","id":"' + patient_id(n) + '","identifier":[{"use":"official","system":"'
            + INS_SYSTEM + '","value":"' + f["ins"] + '"}],"active":true,"name":[{"use":"official","family":"'
            + f["family"] + '","given":["' + '","'.join(f["given"]) + '"]}],"gender":"' + f["gender"]
            + '","birthDate":"' + f["birthDate"] + '","address":[{"use":"home","line":["' + f["line"]
            + '"],"city":"' + f["city"] + '","postalCode":"' + f["postalCode"] + '","country":"FR"}]}')


# ---- Bundles ----------------------------------------------------------------------------------
def transaction(kind, seed, first, last, patients):
    """A transaction Bundle PUTting resources first..last (inclusive) of `kind` ('Patient' or
    'Observation') at their fixed ids, as UTF-8 bytes."""
    parts = []
    if kind == "Patient":
        for n in range(first, last + 1):
            rid = patient_id(n)
            parts.append('{"resource":' + patient_json(seed, n) + ',"request":{"method":"PUT","url":"Patient/'
                         + rid + '"}}')
    else:
        for n in range(first, last + 1):
            parts.append('{"resource":' + observation_json(seed, n, patients)
                         + ',"request":{"method":"PUT","url":"Observation/' + observation_id(n) + '"}}')
    return ('{"resourceType":"Bundle","type":"transaction","entry":[' + ",".join(parts) + "]}").encode("utf-8")
