"""Features and head logits of a whole image set, extracted once and reused by every metric."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from grporm.data import ImageSet, InputSpec


@torch.no_grad()
def extract(model, images: ImageSet, input_spec: InputSpec, batch_size: int, device: torch.device,
            desc: str = "features", autocast: bool = False,
            channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, D), logits (N, C)) in float32 on the CPU, in the set's order."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model.eval()
    feats, logits = [], []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, leave=False, unit="batch", disable=None):
        batch = images.images[start:start + batch_size]
        x = input_spec.preprocess(batch).to(device, non_blocking=True).contiguous(memory_format=layout)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            f, z = model.features_and_logits(x)
        feats.append(f.float().cpu())
        logits.append(z.float().cpu())
    return torch.cat(feats), torch.cat(logits)
