#!/usr/bin/env python
"""Write dpa2_jax/data/econf.json: each element's ground-state orbital occupations, the input of
DeePMD-kit's electronic-configuration type embedding (``use_econf_tebd``).

    python scripts/make_econf_table.py [--out PATH]      (needs the ``mendeleev`` package)

The rule, from the electron configurations in mendeleev's element table:
  * subshells: every (n, l) occupied in the ground state of at least one element, ordered by n,
    then l (1s 2s 2p 3s 3p 3d 4s 4p 4d 4f 5s 5p 5d 5f 6s 6p 6d 7s 7p: 59 orbitals);
  * Hund's rule inside a subshell of 2l+1 orbitals holding k electrons: max(0, k - (2l+1))
    orbitals are doubly occupied, the next min(k, 2(2l+1) - k) singly, the rest empty; doubly
    occupied orbitals come first;
  * one digit (0, 1, 2) per orbital in that order.
At run time (``dpa2_jax.descriptor.type_embedding``) each orbital becomes two entries of +-1
(0 -> -1 -1, 1 -> -1 +1, 2 -> +1 +1), 118 in all, scaled by 1/sqrt(118) to unit length.

One deliberate exception, ``OVERRIDES``: lawrencium. mendeleev 1.3.0 lists the relativistic
ground state [Rn] 5f14 7s2 7p1; DeePMD-kit 3.2.0's vectors (made with an older mendeleev) use the
classical [Rn] 5f14 6d1 7s2, and models trained with them must see the same input, so the table
keeps the classical configuration and says so in its provenance.

Only this script needs mendeleev; the package reads the JSON file it writes.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "dpa2_jax" / "data" / "econf.json"
LETTERS = "spdfghi"
# symbol -> configuration used instead of mendeleev's (see the module docstring)
OVERRIDES = {"Lr": "[Rn] 5f14 6d1 7s2"}


def ground_states() -> dict[str, dict[tuple[int, int], int]]:
    """{symbol: {(n, l): electrons}} for every element of mendeleev's table, by atomic number."""
    from mendeleev.econf import ElectronicConfiguration
    from mendeleev.fetch import fetch_table

    table = fetch_table("elements").sort_values("atomic_number")
    out = {}
    for symbol, conf, z in zip(table.symbol, table.electronic_configuration, table.atomic_number):
        conf = OVERRIDES.get(symbol, conf)
        occupations = {
            (n, LETTERS.index(letter)): k
            for (n, letter), k in ElectronicConfiguration(conf).conf.items()
        }
        if sum(occupations.values()) != z:
            raise ValueError(f"{symbol}: configuration {conf!r} does not hold {z} electrons")
        out[symbol] = occupations
    return out


def hund_orbitals(l: int, k: int) -> list[int]:
    """Occupation of the 2l+1 orbitals of a subshell holding k electrons (paired ones first)."""
    m = 2 * l + 1
    if not 0 <= k <= 2 * m:
        raise ValueError(f"{k} electrons do not fit a subshell with l={l}")
    pairs = max(0, k - m)
    single = min(k, 2 * m - k)
    return [2] * pairs + [1] * single + [0] * (m - pairs - single)


def make_table() -> dict:
    states = ground_states()
    subshells = sorted({key for occ in states.values() for key in occ})
    rows = {
        symbol: "".join(str(o) for n, l in subshells for o in hund_orbitals(l, occ.get((n, l), 0)))
        for symbol, occ in states.items()
    }
    return {
        "subshells": [f"{n}{LETTERS[l]}" for n, l in subshells],
        "occupations": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    table = make_table()
    data = {
        "provenance": {
            "source": "element ground-state electron configurations of the mendeleev package "
            f"{importlib.metadata.version('mendeleev')}",
            "date": datetime.date.today().isoformat(),
            "script": "scripts/make_econf_table.py",
            "overrides": {
                symbol: f"{conf} (DeePMD-kit's vectors; mendeleev lists another ground state)"
                for symbol, conf in OVERRIDES.items()
            },
            "rule": (
                "one digit per orbital (0 empty, 1 singly, 2 doubly occupied) over the listed "
                "subshells in order; inside a subshell of 2l+1 orbitals with k electrons "
                "(Hund's rule) max(0, k-(2l+1)) doubly occupied orbitals come first, then "
                "min(k, 2(2l+1)-k) singly occupied ones. The type-embedding input maps each "
                "orbital to two entries (0 -> -1 -1, 1 -> -1 +1, 2 -> +1 +1) and scales the "
                "vector by 1/sqrt(its length) (DeePMD-kit's use_econf_tebd)."
            ),
        },
        **table,
    }
    out = Path(args.out)
    text = json.dumps(data, indent=1)
    out.write_text(text + "\n")
    width = 2 * len(next(iter(table["occupations"].values())))
    print(f"wrote {out}: {len(table['occupations'])} elements, {width} entries per vector")


if __name__ == "__main__":
    main()
