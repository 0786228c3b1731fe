"""LightningModules: one file per method family on a small shared base. Importing this package registers them."""

from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.nested.adaptive_tokens import ALIT, KARL, Nugget
from reprzoo.lightning_modules.vision_ssl.hydra import Hydra
from reprzoo.lightning_modules.vision_ssl.prototypes import STProtoPNet
from reprzoo.lightning_modules.vision_ssl.mim import CMIM, CMIMFramework
from reprzoo.lightning_modules.vision_ssl.interclr import InterCLR
from reprzoo.lightning_modules.vision_ssl.diffusion import DDPMFeatures
from reprzoo.lightning_modules.vision_ssl.dbpm import DBPM
from reprzoo.lightning_modules.vision_ssl.stdim import STDIM
from reprzoo.lightning_modules.compatible.bct import BCT
from reprzoo.lightning_modules.compatible.weight_search import NWS
from reprzoo.lightning_modules.compatible.modular import PICLE
from reprzoo.lightning_modules.compatible.continual import DER, PODNet
from reprzoo.lightning_modules.compatible.concatenated import CatN
from reprzoo.lightning_modules.vision_ssl.byol import BYOL
from reprzoo.lightning_modules.compatible.orthogonal import BT2, OCA
from reprzoo.lightning_modules.compatible.stationary import CL2R, EBV, CoReS, StationaryRepresentations
from reprzoo.lightning_modules.vision_ssl.dino import DINO
from reprzoo.lightning_modules.vision_ssl.directpred import DirectPred
from reprzoo.lightning_modules.vision_ssl.distillation import MobileVOS
from reprzoo.lightning_modules.finetune import FineTune
from reprzoo.lightning_modules.vision_ssl.jepa import IJEPA, SeqJEPA, SparseJEPA
from reprzoo.lightning_modules.vision_ssl.redundancy import BarlowTwins, VICReg
from reprzoo.lightning_modules.vision_ssl.equivariant import SIE
from reprzoo.lightning_modules.vision_ssl.amcl import AMCL
from reprzoo.lightning_modules.vision_ssl.beclr import BECLR
from reprzoo.lightning_modules.vision_ssl.deeppermnet import DeepPermNet
from reprzoo.lightning_modules.vision_ssl.mlc import MLC
from reprzoo.lightning_modules.nested.matryoshka import MRL, MatryoshkaSimCLR, TwoDMatryoshka
from reprzoo.lightning_modules.vision_ssl.gsimclr import GSimCLR
from reprzoo.lightning_modules.vision_ssl.moco import MoCoV2, MoCoV3
from reprzoo.lightning_modules.vision_ssl.obow import OBoW
from reprzoo.lightning_modules.registry import METHODS, MethodInfo, get_method, list_methods, register_method
from reprzoo.lightning_modules.vision_ssl.simclr import SimCLR
from reprzoo.lightning_modules.vision_ssl.simsiam import SimSiam

__all__ = [
    "ALIT",
    "KARL",
    "Nugget",
    "MRL",
    "MatryoshkaSimCLR",
    "TwoDMatryoshka",
    "PICLE",
    "NWS",
    "PODNet",
    "DER",
    "CatN",
    "BT2",
    "OCA",
    "CL2R",
    "CoReS",
    "EBV",
    "StationaryRepresentations",
    "IJEPA",
    "SeqJEPA",
    "SparseJEPA",
    "Hydra",
    "STProtoPNet",
    "CMIMFramework",
    "CMIM",
    "InterCLR",
    "DDPMFeatures",
    "GSimCLR",
    "MoCoV2",
    "MoCoV3",
    "SimCLR",
    "BECLR",
    "DeepPermNet",
    "MLC",
    "DBPM",
    "STDIM",
    "BarlowTwins",
    "VICReg",
    "SIE",
    "AMCL",
    "BCT",
    "BYOL",
    "METHODS",
    "DINO",
    "DirectPred",
    "EmbeddingModule",
    "FineTune",
    "MethodInfo",
    "MobileVOS",
    "OBoW",
    "SimSiam",
    "TrainingOutput",
    "get_method",
    "list_methods",
    "register_method",
]
