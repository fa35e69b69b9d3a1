"""Does the Ge/Te energy-bias split matter on GeTe? Fine-tune (``--model-branch RANDOM``) and
train from scratch on GeTe frames 0-4 with ``model.bias_prior`` set, and validate on frames
20-35 as ``scripts/finetune_benefit.py`` does (compare with its GeTe n=5 rows, made without a
prior from the same pretrained model):

    python scripts/finetune_benefit.py --workdir W --pretrain-steps 300 --steps 500 --sizes 5 \\
        --targets gete
    python scripts/bias_prior_gete.py W/prior W/pretrain 500 '{"Ge": -150.0, "Te": -179.0}'

Prints and writes ``results.json``: per method (zero_shot, finetuned, scratch) the validation
energy (per atom) and force RMSE and the model's out_bias [eV] (Ge, Te).
"""

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import finetune_benefit as fb  # noqa: E402


def main() -> None:
    import numpy as np

    import dpa2_jax

    work, pretrained = pathlib.Path(sys.argv[1]), sys.argv[2]
    steps, prior = int(sys.argv[3]), json.loads(sys.argv[4])
    pools, valids = fb._pool_and_validation("gete")
    valid_dirs = fb._write(valids, work / "data" / "valid")
    train_dirs = fb._write(fb._subset(pools, 5), work / "data" / "train_5")
    finetune = ["--finetune", pretrained, "--model-branch", "RANDOM"]
    out = {}
    for method, n, extra in (("zero_shot", 0, finetune), ("finetuned", steps, finetune),
                             ("scratch", steps, [])):  # fmt: skip
        d = fb._input("gete", train_dirs, valid_dirs, n, 1)
        d["model"]["bias_prior"] = prior
        fb._train(d, work / method, *extra)
        out[method] = fb._validate(work / method / "run", valids)
        params = dpa2_jax.load(work / method / "run").params
        out[method]["out_bias"] = np.asarray(params["heads"]["default"]["out_bias"]).tolist()
        print(method, out[method], flush=True)
    (work / "results.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
