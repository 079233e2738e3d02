"""A small built-in set of (query, passage) pairs for measuring activation ranges before int8
quantization of a cross-encoder (see :func:`rank.onnx._export.smooth_activations`).

The activation outliers that int8 smoothing corrects come from the model (a few hidden
channels, the special tokens), not from the topic of the text, so a handful of ordinary pairs
of varied length is enough. Users with very different text pass their own pairs to
``export_cross_encoder(..., calibration=...)``.
"""

CALIBRATION_PAIRS: tuple[tuple[str, str], ...] = (
    ("how do vaccines train the immune system",
     "A vaccine exposes the body to a harmless piece or weakened form of a pathogen. White blood cells "
     "learn to recognise it and keep memory cells, so a later infection is met by a fast and strong "
     "response."),
    ("boiling point of water at altitude",
     "Air pressure falls with height, and water boils when its vapour pressure equals the pressure "
     "around it. At two thousand metres water boils near ninety three degrees, so cooking takes longer."),
    ("who wrote the first computer program",
     "Ada Lovelace published notes in 1843 on Babbage's proposed Analytical Engine, including a method "
     "for computing Bernoulli numbers that is often called the first published program."),
    ("symptoms of iron deficiency",
     "The train was delayed for forty minutes because of a signal fault near the river crossing."),
    ("best way to store fresh basil",
     "Trim the stems and stand the basil in a glass of water at room temperature, loosely covered. "
     "Cold air in a refrigerator darkens the leaves within a day."),
    ("what causes ocean tides",
     "Tides are produced mainly by the Moon's gravity, which pulls hardest on the side of the Earth "
     "facing it and least on the far side. The Sun adds a smaller effect, giving spring and neap tides. "
     "Coastline shape and basin depth change the height and timing of tides from place to place, so "
     "some bays see a range of more than ten metres while enclosed seas see almost none."),
    ("python list sort stability",
     "Sorting in Python is stable: items that compare equal keep their original order, which allows "
     "sorting by several keys in successive passes."),
    ("capital of australia",
     "Canberra was chosen as a compromise between Sydney and Melbourne and became the seat of "
     "government in 1927."),
    ("how long should a cover letter be",
     "Quarterly revenue rose eight percent, driven by subscription growth in Europe and lower "
     "hardware costs."),
    ("treatment options for type 2 diabetes",
     "Management usually starts with diet, exercise and weight loss. When these are not enough, "
     "metformin is the common first medicine; other classes such as SGLT2 inhibitors or GLP-1 "
     "receptor agonists are added according to heart and kidney risk, and insulin is used when blood "
     "glucose stays high. Regular checks of HbA1c, eyes, feet and kidney function are part of care."),
    ("why is the sky blue",
     "Sunlight is scattered by air molecules, and shorter wavelengths scatter much more strongly, so "
     "blue light reaches the eye from every direction of the sky."),
    ("effects of caffeine on sleep",
     "Caffeine blocks adenosine receptors and has a half-life of around five hours, so an afternoon "
     "coffee can shorten deep sleep and delay sleep onset."),
    ("history of the printing press",
     "Around 1440 Johannes Gutenberg combined movable metal type, oil-based ink and a screw press. "
     "Printed books spread across Europe within decades, lowering their cost and helping the spread "
     "of literacy, scientific exchange and the Reformation."),
    ("how to reset a router",
     "Hold the reset button for about ten seconds until the lights blink; the router returns to its "
     "factory settings, including the default network name and password."),
    ("difference between weather and climate",
     "Weather is the state of the atmosphere over hours or days; climate is the long-term average "
     "and variability of weather in a region, usually over thirty years."),
    ("protein sources for vegetarians", "Lentils, chickpeas, tofu, eggs, yoghurt and nuts."),
)
