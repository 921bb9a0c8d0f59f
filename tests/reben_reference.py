"""reBEN's classifiers as Clasen et al. publish them (arXiv:2407.03653), with random weights, for the
import tests and bench/import_models.py: a configilm ``ConfigILM`` network kept as ``model`` as in
reben-training-scripts' ``BigEarthNetv2_0_ImageClassifier``, saved in the Hugging Face hub's layout,
and band values around reBEN's statistics."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from configilm.ConfigILM import ConfigILM, ILMConfiguration, ILMType
from configilm.extra.BENv2_utils import NEW_LABELS, band_combi_to_mean_std
from safetensors.torch import save_file

S2_ESA_ORDER = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")  # an L2A product


class AuthorsClassifier(torch.nn.Module):
    """Stands for reben-training-scripts' BigEarthNetv2_0_ImageClassifier: a ConfigILM network as ``model``."""

    def __init__(self, backbone: str, channels: int, seed: int) -> None:
        super().__init__()
        self.config = ILMConfiguration(timm_model_name=backbone, image_size=120, channels=channels, classes=19,
                                       network_type=ILMType.IMAGE_CLASSIFICATION, drop_rate=0.15, drop_path_rate=0.15)
        self.model = ConfigILM(self.config)
        generator = torch.Generator().manual_seed(seed)
        for module in self.modules():  # spread the outputs: random BatchNorm statistics and affine terms
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.data = 1 + 0.3 * torch.randn(module.weight.shape, generator=generator)
                module.bias.data = 0.2 * torch.randn(module.bias.shape, generator=generator)
                module.running_mean = 0.1 * torch.randn(module.running_mean.shape, generator=generator)
                module.running_var = 0.5 + torch.rand(module.running_var.shape, generator=generator)
        self.eval()

    def forward(self, image):
        return self.model(image)

    def publish(self, folder: Path) -> Path:
        """The hub's layout: model.safetensors (PyTorchModelHubMixin) and config.json (ILMConfiguration)."""
        folder.mkdir(parents=True)
        save_file(self.state_dict(), folder / "model.safetensors")
        (folder / "config.json").write_text(self.config.to_json())
        return folder / "model.safetensors"

    @torch.no_grad()
    def probabilities(self, values: np.ndarray, bands) -> dict[str, np.ndarray]:
        """The authors' inference on raw band values [len(bands), H, W]: configilm's 120_nearest
        standardisation, logits, sigmoid; by class name (configilm's NEW_LABELS order)."""
        mean, std = band_combi_to_mean_std(list(bands))
        image = (values - mean[:, None, None]) / std[:, None, None]
        patches = [image[:, :, c:c + 120] for c in range(0, image.shape[2], 120)]
        probabilities = torch.sigmoid(self(torch.tensor(np.stack(patches), dtype=torch.float32))).numpy()
        return {name: probabilities[:, i] for i, name in enumerate(NEW_LABELS)}


def reben_bands(names, height: int, width: int, seed: int) -> np.ndarray:
    """Smooth random values around reBEN's statistics: [len(names), height, width] (multiples of 10)."""
    rng = np.random.default_rng(seed)
    mean, std = band_combi_to_mean_std(list(names))
    smooth = np.kron(rng.normal(size=(len(names), height // 10, width // 10)), np.ones((10, 10)))
    return mean[:, None, None] + std[:, None, None] * smooth
