"""What one benchmark cell is: its spec, its run id, and the leaderboard columns that name it.

A cell is (watermark, trigger, model, dataset, preset, seed, attack, strength,
explainer). Everything that can change one of its numbers is in ``run_id``:
the watermark's full spec and version (``mark_id``), the attack's parameters and
version (``attack_id``), the other plugins' versions, the null population and
the harness version. A changed recipe therefore never reuses a stale record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from harness.io import spec_hash
from harness.metrics import Column

# 0.6: the paired-rank verifier beside the detector, thief budgets, the serving attacks;
# 0.5: nulls of the suspect's architecture, attacked nulls, paired test, empirical p-values;
# 0.4: channels-last training, one torch thread per task; 0.3: verdicts derived when shown
HARNESS_VERSION = "0.6.0"


@dataclass(frozen=True)
class Setting:
    """What the data splits, the clean reference model and the null population depend on."""

    model: str
    dataset: str
    preset: str
    seed: int
    data_dir: str | None = None
    dataset_options: tuple = ()  # sorted (key, value) pairs

    @property
    def label(self) -> str:
        return f"{self.model}-{self.dataset}-{self.preset}-seed{self.seed}"


@dataclass(frozen=True)
class CellSpec:
    watermark: str
    model: str
    dataset: str
    attack: str
    strength: float
    seed: int
    preset: str
    explainer: str
    trigger: str  # the trigger family the watermark was embedded with
    nulls: str  # the null population the verdict is calibrated against, e.g. "10x basic-unet @ 0.05"
    mark_id: str  # hash of the watermark's full spec (version, trigger parameters, target, floor, ...)
    attack_id: str = ""  # hash of the attack's full spec (version, parameters)
    plugin_versions: tuple = field(default=())  # (kind, version) of the model, dataset, explainer and trigger
    attacker_images: int | None = None  # ``--attacker-images``; None: the preset's attacker split

    @property
    def run_id(self) -> str:
        spec = asdict(self)
        if spec["attacker_images"] is None:  # the thief's usual images: the run ids they always had
            del spec["attacker_images"]
        return spec_hash({**spec, "harness": HARNESS_VERSION})


SPEC_COLUMNS = [
    Column("watermark", None, "Watermark or baseline under test (`harness list`)."),
    Column("role", None, "`watermark` (method under test), `baseline` (backdoor-watermark baseline) or "
                         "`fingerprint` (nothing embedded: the owner's clean model's answers are the evidence)."),
    Column("trigger", None, "Trigger family the mark was embedded with (`harness list triggers`): `patch` yellow square bottom-right; `text` the paper's white \"TEST\" top-left; `border` black frame; `noise` seeded noise square top-right; `warp` WaNet-style smooth warp of the whole image; `blend` full-image pattern blended at alpha 0.1."),
    Column("model", None, "Registered segmentation architecture."),
    Column("dataset", None, "Registered dataset (`harness list datasets`); with its options as `name[key=value]`, and for a folder dataset `name:<hash>`, a fingerprint of the files on disk and the options."),
    Column("preset", None, "Run size (`tiny` on CPU, `paper` on GPU)."),
    Column("attack", None, "Removal attack applied to the watermarked model (`harness list attacks`); a chain is named by its steps, e.g. `prune.l1_50+ftal.e5`."),
    Column("attack_family", None, "The attack's family: pruning, fine-tuning, distillation, quantization, noise, input-transform, overwriting, serving, backdoor-removal, chain."),
    Column("strength", None, "Attack strength, in the attack's own unit (e.g. fraction of weights pruned)."),
    Column("seed", None, "Seed of data, initialisation, poisoning and explainer; null member k uses seed+1+k."),
    Column("explainer", None, "Attribution method used for the QR certificate."),
    Column("nulls", None, "The null population the verdicts are calibrated against: K models x the suspect's architecture @ false-accusation level. Each member has its own seed and its own images (`harness nulls --model M`); after an attack, the first nulls_after of them under the same attack."),
]
RUN_ID_COLUMN = Column("run_id", None, "Hash of the cell spec (plugins' parameters and versions included); the record is results/runs/<run_id>.json.")
