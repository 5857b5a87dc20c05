"""The Galaxy10 DECals classes: their ids and names, the three this project uses by default, and a
class read from a folder name."""

CLASS_NAMES = {0: "Disturbed", 1: "Merging", 2: "Round Smooth", 3: "In-between Round Smooth",
               4: "Cigar Round Smooth", 5: "Barred Spiral", 6: "Unbarred Tight Spiral",
               7: "Unbarred Loose Spiral", 8: "Edge-on without Bulge", 9: "Edge-on with Bulge"}
DEFAULT_CLASSES = (2, 6, 9)  # as different as possible: round, spiral, edge-on


def _norm(name):
    return name.lower().replace("_", " ").replace("-", " ").strip()


def class_from_name(name):
    """Galaxy10 id from a folder name: '6', 'Unbarred Tight Spiral' or 'unbarred_tight_spiral'; None if
    it is neither."""
    if name.strip().isdigit() and int(name) in CLASS_NAMES:
        return int(name)
    return {_norm(v): k for k, v in CLASS_NAMES.items()}.get(_norm(name))
