#!/usr/bin/env python
"""Regenerate the DeePMD-kit reference data under tests/reference/.

For every model variant of tests/reference_models.py: build a DeePMD-kit 3.2.0
DPA-2 energy model with randomised variables, save it as ``<variant>.dp`` and
evaluate it with DeePMD-kit's JAX backend (energy, forces, virial, atomic
energies) and its numpy backend (energies, cross-check) on the test
geometries; store one ``<variant>__<geometry>.npz`` per case.

    python scripts/make_reference.py [--only NAME ...] [--out DIR]    (with the [test] extras)

DeePMD-kit is used here only to produce reference numbers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
import zlib
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

import reference_models as rm  # noqa: E402

# geometries per variant: the 192-atom water box only for the baselines
WATER_FRAMES = {"base": 2, "base_zero_davg": 1}


def variant_seed(name: str) -> int:
    return zlib.crc32(name.encode()) % (2**31)


def geometries_for(name: str, type_map=rm.TYPE_MAP):
    """The variant's geometries, atom types mapped into its ``type_map`` by element symbol."""
    out = []
    if name in WATER_FRAMES:
        out.append(("water", rm.water_frames(WATER_FRAMES[name], type_map)))
    out.append(("small_cell", rm.small_triclinic_cell(type_map)))
    out.append(("molecule", rm.molecule(type_map)))
    return out


def sel_margin(coords, cells, rcut: float, sel: int) -> tuple[int, float]:
    """(#atoms whose neighbour list is truncated, smallest distance gap at the cut)."""
    x = np.asarray(coords)[0]
    ntrunc, gap = 0, np.inf
    if cells is None:
        shifts = np.zeros((1, 3))
    else:
        cell = np.asarray(cells)[0]
        r = np.arange(-1, 2)
        shifts = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3) @ cell
    for i in range(len(x)):
        d = np.linalg.norm(x[None] + shifts[:, None] - x[i], axis=-1).ravel()
        d = np.sort(d[(d > 1e-10) & (d < rcut)])
        if len(d) > sel:
            ntrunc += 1
            gap = min(gap, d[sel] - d[sel - 1])
    return ntrunc, gap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--out", default=str(rm.REFERENCE_DIR))
    ap.add_argument("--only", nargs="*", default=None, help="variant names")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import deepmd

    dp_version = deepmd.__version__
    import jax

    known = [name for name, _ in rm.variants()]
    unknown = sorted(set(args.only or ()) - set(known))
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; known: {known}")

    rows, failures = [], []
    t_all = time.perf_counter()
    for name, cfg in rm.variants():
        if args.only and name not in args.only:
            continue
        seed = variant_seed(name)
        dp_path = out / f"{name}.dp"
        t0 = time.perf_counter()
        try:
            rm.build_random_dp_model(
                cfg, dp_path, seed=seed, **rm.VARIANT_BUILD_KWARGS.get(name, {})
            )
        except Exception as exc:  # report DeePMD rejections, go on
            failures.append((name, "build", f"{type(exc).__name__}: {exc}"))
            print(f"[{name}] BUILD FAILED: {type(exc).__name__}: {exc}", flush=True)
            continue
        t_build = time.perf_counter() - t0
        dcfg = cfg["descriptor"]
        precision = dcfg.get("precision", "float64")
        tol = 1e-10 if precision == "float64" else 1e-5
        for gname, (coords, cells, types) in geometries_for(name, cfg["type_map"]):
            try:
                t0 = time.perf_counter()
                ref = rm.reference_eval(dp_path, coords, cells, types)
                t_jax = time.perf_counter() - t0
                t0 = time.perf_counter()
                ref_np = rm.reference_energy_numpy(dp_path, coords, cells, types)
                t_np = time.perf_counter() - t0
            except Exception as exc:
                failures.append((name, gname, f"{type(exc).__name__}: {exc}"))
                print(f"[{name}/{gname}] EVAL FAILED: {type(exc).__name__}: {exc}", flush=True)
                continue
            d_e = float(np.max(np.abs(ref["energy"] - ref_np["energy"])))
            d_ae = float(np.max(np.abs(ref["atom_energy"] - ref_np["atom_energy"])))
            if max(d_e, d_ae) > tol * max(1.0, float(np.max(np.abs(ref["energy"])))):
                failures.append((name, gname, f"jax vs numpy energy differ: {d_e:.2e}"))
            trunc = {}
            rep, ri = dcfg["repformer"], dcfg["repinit"]
            blocks = [("repinit", ri["rcut"], ri["nsel"]), ("repformer", rep["rcut"], rep["nsel"])]
            if ri.get("use_three_body"):
                blocks.append(("three_body", ri["three_body_rcut"], ri["three_body_sel"]))
            for bname, rcut, sel in blocks:
                trunc[bname] = sel_margin(coords, cells, rcut, sel)
            arrays = dict(
                coords=np.asarray(coords, dtype=np.float64),
                atom_types=np.asarray(types, dtype=np.int64),
                pbc=np.array(cells is not None),
                energy=ref["energy"],
                forces=ref["forces"],
                virial=ref["virial"],
                atom_energy=ref["atom_energy"],
                energy_numpy=ref_np["energy"],
                atom_energy_numpy=ref_np["atom_energy"],
                type_map=np.array(cfg["type_map"]),
                variant=np.array(name),
                geometry=np.array(gname),
                model_file=np.array(dp_path.name),
                seed=np.array(seed),
                precision=np.array(precision),
                model_config_json=np.array(json.dumps(cfg, sort_keys=True)),
            )
            if cells is not None:
                arrays["cells"] = np.asarray(cells, dtype=np.float64)
            np.savez_compressed(out / f"{name}__{gname}.npz", **arrays)
            nf, nat = np.asarray(coords).shape[:2]
            rows.append(
                dict(
                    variant=name,
                    geometry=gname,
                    nframes=nf,
                    natoms=nat,
                    t_build=t_build,
                    t_jax=t_jax,
                    t_np=t_np,
                    d_e=d_e,
                    d_ae=d_ae,
                    trunc=trunc,
                )
            )
            tr = ", ".join(f"{k}:{v[0]} (min gap {v[1]:.1e} A)" for k, v in trunc.items() if v[0])
            print(
                f"[{name}/{gname}] nf={nf} nat={nat} E={ref['energy'][0]: .6f} "
                f"jax {t_jax:6.2f}s numpy {t_np:5.2f}s  |dE|={d_e:.1e} |dAE|={d_ae:.1e}"
                + (f"  truncated: {tr}" if tr else ""),
                flush=True,
            )
    t_total = time.perf_counter() - t_all

    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"\ntotal {t_total:.0f} s, {len(rows)} cases, {size / 1e6:.2f} MB in {out}")
    if failures:
        print("FAILURES:")
        for f in failures:
            print("  ", *f)

    if not args.only:
        write_readme(out, rows, failures, dp_version, jax.__version__, t_total)
    elif (out / "README.md").exists():
        merge_readme(out, rows, failures, known)
    if failures:
        sys.exit(1)


def write_readme(out: Path, rows, failures, dp_version, jax_version, t_total) -> None:
    now = datetime.datetime.now(tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# DeePMD-kit reference data for the DPA-2 parity tests",
        "",
        "Generated by `scripts/make_reference.py` (do not edit by hand):",
        "",
        "```",
        "python scripts/make_reference.py   # from the repository root, in an environment with DeePMD-kit",
        "```",
        "",
        f"* date: {now}",
        f"* DeePMD-kit {dp_version} (JAX backend for energy/forces/virial, numpy "
        "`dpmodel` backend for the energy cross-check), "
        f"jax {jax_version}, numpy {np.__version__}, Python {platform.python_version()}, CPU",
        "* models: `tests/reference_models.py` (`TINY_DPA2`, its one-option variants and the "
        "`econf_*` combinations; each npz stores the variant's `type_map`); "
        "every variable randomised with `numpy.random.default_rng(seed)`, "
        "seed = crc32(variant name) mod 2**31 (stored in each npz)",
        "",
        "## Files",
        "",
        "* `<variant>.dp`: the DeePMD-kit model (native HDF5 `.dp` format, "
        "`deepmd.dpmodel.utils.serialization.load_dp_model`).",
        "* `<variant>__<geometry>.npz`: inputs and DeePMD outputs, float64:",
        "  `coords [nf,nat,3]` (A), `cells [nf,3,3]` (rows = lattice vectors; absent when "
        "`pbc` is False), `atom_types [nat]` (indices into `type_map`), "
        "`energy [nf]`, `forces [nf,nat,3]`, `virial [nf,3,3]` "
        "(DeePMD convention: W = -sum_a dE/dr_a (x) r_a over extended atoms = -dE/d strain), "
        "`atom_energy [nf,nat]`, `energy_numpy`, `atom_energy_numpy` (numpy backend), and "
        "`variant`, `geometry`, `model_file`, `seed`, `precision`, `model_config_json`.",
        "",
        "Geometries: `water` = tests/systems/water/data_0 frames 0-1 (192 atoms, "
        "periodic, neighbour lists truncated to sel, see below); `small_cell` = 12 atoms "
        "C/H/N/O in a triclinic cell (no truncation, no distance ties); `molecule` = "
        "tests/systems/cho_molecules/C3H3O4 frame 0 (10 atoms, no PBC, box=None).",
        "",
        "With TINY_DPA2 on water frame 0, 10 atoms have more than 30 neighbours within "
        "4.0 A (repinit nlist truncated) and 3 more than 12 within 3.0 A (three-body nlist "
        "truncated); the smallest distance gap between the last kept and the first dropped "
        "neighbour is 1.4e-4 A (three-body, atom 140), so the truncation is unambiguous in "
        "float64.",
        "",
        "Tolerance expected against these numbers: 1e-10 (float64 variants); the "
        "`float32` variant only to ~1e-6 relative.",
        "",
        "## Cases",
        "",
        "| variant | geometry | nf x nat | jax s | numpy s | max abs dE jax-numpy | truncated atoms (repinit/repformer/3-body) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [table_row(r) for r in rows]
    lines += [
        "",
        f"Total generation time {t_total:.0f} s. The first JAX evaluation of each new "
        "array shape/dtype is slow (eager op-by-op compilation), later ones are fast.",
    ]
    if failures:
        lines += ["", "## Failures", ""] + [f"* {' / '.join(f)}" for f in failures]
    (out / "README.md").write_text("\n".join(lines) + "\n")


def table_row(r: dict) -> str:
    """One row of the README's case table."""
    tr = "/".join(str(r["trunc"].get(k, (0,))[0]) for k in ("repinit", "repformer", "three_body"))
    return (
        f"| {r['variant']} | {r['geometry']} | {r['nframes']} x {r['natoms']} | "
        f"{r['t_jax']:.1f} | {r['t_np']:.2f} | {max(r['d_e'], r['d_ae']):.1e} | {tr} |"
    )


def merge_readme(out: Path, rows, failures, order: list[str]) -> None:
    """After an ``--only`` run: replace the regenerated variants' rows of the README table
    (the other rows stay), keep the table in ``rm.variants()`` order, and note the run."""
    text = (out / "README.md").read_text().splitlines()
    table = [i for i, line in enumerate(text) if line.startswith("| ") and "---" not in line]
    header, first, last = table[0], table[1], table[-1]
    new = {r["variant"] for r in rows}
    kept = [text[i] for i in table[1:] if text[i].split("|")[1].strip() not in new]
    merged = kept + [table_row(r) for r in rows]
    rank = {name: k for k, name in enumerate(order)}
    merged.sort(key=lambda line: rank.get(line.split("|")[1].strip(), len(rank)))
    assert first == header + 2, "README table layout changed"
    now = datetime.datetime.now(tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    note = f"Rows of {', '.join(sorted(new))} regenerated with `--only` on {now}."
    tail = [line for line in text[last + 1 :] if not line.startswith("Rows of ")]
    while tail and not tail[-1]:
        tail.pop()
    if failures:
        tail += ["", "## Failures (--only run)", ""] + [f"* {' / '.join(f)}" for f in failures]
    (out / "README.md").write_text("\n".join(text[:first] + merged + tail + ["", note]) + "\n")


if __name__ == "__main__":
    main()
