"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`), fetched from its source distribution.

The test files are not part of the transformers wheel; they ship in the sdist on PyPI. On first use the sdist of the
*installed* transformers version is downloaded with pip, checked against the sha256 pinned below, and its two common
test modules are unpacked into `$MGTE_DATA/transformers-tests/<version>/` (nothing is vendored into this repository).
They are imported as the package `transformers_common_tests`.

The sdist lacks three modules that the common tests import. They are supplied here, as small stand-ins:
- `generation.test_utils.GenerationTesterMixin`: generation tests; not applicable to an encoder (an empty mixin, as
  transformers' own encoder testers never inherit it).
- `exporters.test_export.ExportTesterMixin`: the base class of `ModelTesterMixin`, with torch.export tests; absent
  from the sdist, so an empty mixin. Export is covered by our own tests (`tests/test_export.py`, ONNX through
  `encode_padded`, and the `torch.compile` tests of the modeling suite).
- `utils.test_configuration_utils.config_common_kwargs`: the common `PreTrainedConfig` arguments, each at a
  non-default value, that `ConfigTester.check_config_arguments_init` sets and reads back (written here).
"""

from __future__ import annotations

import hashlib
import importlib
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

import transformers

from mgte_hf.tokenizer.loading import data_home


PACKAGE = "transformers_common_tests"
# sha256 of transformers' source distributions on PyPI (`pip download --no-binary :all: transformers==X`).
SDIST_SHA256 = {
    "5.24.0": "906cb8c3cb2123575e263962586a4d21a979ce97feeb95fe6aaf66fe6ae88bf3",
    "5.25.0": "9120226c6bf170d69abc3029036799bb5d48e552f7127646a529a5c9309812e2",
}
MEMBERS = ("tests/test_modeling_common.py", "tests/test_configuration_common.py")

# Every common `PreTrainedConfig` argument at a value other than its default (read back by ConfigTester).
CONFIG_COMMON_KWARGS = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "finetuning_task": "translation",
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}


def common_tests_dir(version: str = transformers.__version__) -> Path:
    """Fetch (once) the common test modules of transformers `version`; returns the folder holding the package."""
    root = data_home() / "transformers-tests" / version
    package = root / PACKAGE
    if all((package / Path(m).name).exists() for m in MEMBERS):
        return root
    expected = SDIST_SHA256.get(version)
    if expected is None:
        raise RuntimeError(f"No sha256 pinned for the transformers {version} sdist: add it to SDIST_SHA256 in "
                           f"{__file__} (pip download --no-deps --no-binary :all: transformers=={version}; sha256sum).")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet", "-d", tmp,
               f"transformers=={version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(Path(tmp).glob("transformers-*.tar.gz"))
        if proc.returncode != 0 or not archives:
            raise RuntimeError(f"Could not download the transformers {version} sdist: {proc.stderr.strip()[-500:]}")
        digest = hashlib.sha256(archives[0].read_bytes()).hexdigest()
        if digest != expected:
            raise RuntimeError(f"{archives[0].name} has sha256 {digest}, expected {expected}.")
        staging = root.with_name(root.name + ".partial")
        (staging / PACKAGE).mkdir(parents=True, exist_ok=True)
        with tarfile.open(archives[0]) as tar:
            for member in MEMBERS:
                data = tar.extractfile(f"transformers-{version}/{member}").read()
                (staging / PACKAGE / Path(member).name).write_bytes(data)
        (staging / PACKAGE / "__init__.py").write_text("")
        if root.exists():
            raise RuntimeError(f"{root} exists but is incomplete; delete it and run again.")
        staging.rename(root)  # atomic: a killed fetch leaves only the .partial folder
    return root


def _stand_in_modules() -> dict[str, types.ModuleType]:
    """The three modules missing from the sdist (see the module docstring)."""
    generation = types.ModuleType(f"{PACKAGE}.generation.test_utils")
    generation.GenerationTesterMixin = type("GenerationTesterMixin", (), {})
    exporters = types.ModuleType(f"{PACKAGE}.exporters.test_export")
    exporters.ExportTesterMixin = type("ExportTesterMixin", (), {})
    utils = types.ModuleType(f"{PACKAGE}.utils.test_configuration_utils")
    utils.config_common_kwargs = dict(CONFIG_COMMON_KWARGS)
    modules = {}
    for module in (generation, exporters, utils):
        parent = module.__name__.rsplit(".", 1)[0]
        modules[parent] = types.ModuleType(parent)
        modules[module.__name__] = module
    return modules


def register_model_names(model_type: str, names: dict[str, str]) -> None:
    """Give `model_type` the entries in transformers' name tables (`MODEL_MAPPING_NAMES`, …) that a model merged into
    transformers has: the common tests tell a base model from a head by them. `model_type` stays out of
    `CONFIG_MAPPING_NAMES`, so the Auto classes never resolve through these entries (they use `register`)."""
    from transformers.models.auto import modeling_auto

    for table, class_name in names.items():
        getattr(modeling_auto, table)[model_type] = class_name


def load_common_tests() -> tuple[types.ModuleType, types.ModuleType]:
    """Import `(test_modeling_common, test_configuration_common)` of the installed transformers."""
    root = str(common_tests_dir())
    if root not in sys.path:
        sys.path.insert(0, root)
    for name, module in _stand_in_modules().items():
        sys.modules.setdefault(name, module)
    return (importlib.import_module(f"{PACKAGE}.test_modeling_common"),
            importlib.import_module(f"{PACKAGE}.test_configuration_common"))
