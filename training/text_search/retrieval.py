"""Contrastive loss with several positives, and the retrieval metrics (R@1/5/10, mAP).

Captions derived from content repeat across images ("Nothing but desert in this tile."), and one
sentence can describe many change pairs ("there is no change"). Relevance is therefore a set:
caption ``c`` is relevant to image ``i`` when ``c`` is one of ``i``'s captions. With unique
captions this is the usual protocol (one relevant image per caption); with repeats it neither
punishes a model for ranking an equally correct image first nor calls a duplicate a negative.

Under data-parallel training the loss runs over the batches of all processes (``gathered``): every
process's items are negatives for every other's, as in one process with the whole batch (CLIP's
training, Radford et al. 2021).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F

RECALL_AT = (1, 5, 10)


def gathered(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each tensor of every process's batch, concatenated in rank order; gradients flow back to each
    process's own part (summed over processes: with DDP's mean over processes, the gradient is that of
    the whole batch's loss). One process: the tensors unchanged."""
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return tensors
    return tuple(torch.cat(dist_nn.all_gather(tensor)) for tensor in tensors)


def caption_clip_loss(image: torch.Tensor, text: torch.Tensor, caption_set: torch.Tensor, choice: torch.Tensor,
                      logit_scale: torch.Tensor) -> torch.Tensor:
    """``multi_positive_clip_loss`` of items (``image`` embeddings) against one sampled caption each
    (``choice``, embedded as ``text``) over the batches of all processes; an item's positives are the
    sampled captions in its ``caption_set`` (caption indices ``[N, K]``)."""
    image, text, caption_set, choice = gathered(image, text, caption_set, choice)
    positives = (caption_set[:, :, None] == choice[None, None, :]).any(dim=1)
    return multi_positive_clip_loss(image, text, positives, logit_scale)


def multi_positive_clip_loss(image: torch.Tensor, text: torch.Tensor, positives: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE (Radford et al. 2021) where row ``i`` of ``positives`` (bool
    ``[N_images, N_texts]``) marks every text that describes image ``i``; the target of each
    softmax is uniform over its positives."""
    logits = logit_scale * image @ text.T
    weights = positives.float()
    image_to_text = -(weights / weights.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    text_to_image = -(weights.T / weights.T.sum(1, keepdim=True) * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    return (image_to_text + text_to_image) / 2


def ranking_metrics(scores: torch.Tensor, relevant: torch.Tensor) -> dict[str, float]:
    """Queries are rows of ``scores`` ``[Q, G]`` (higher = better); ``relevant`` bool ``[Q, G]``.
    R@k: share of queries with a relevant item among the top k; mAP: mean average precision
    over queries with at least one relevant item. Percentages."""
    keep = relevant.any(dim=1)
    scores, relevant = scores[keep], relevant[keep]
    order = scores.argsort(dim=1, descending=True)
    hits = torch.gather(relevant, 1, order).float()
    result = {f"R@{k}": 100.0 * float(hits[:, :k].amax(dim=1).mean()) for k in RECALL_AT}
    precision_at_hit = hits.cumsum(1) / torch.arange(1, hits.shape[1] + 1)
    average_precision = (precision_at_hit * hits).sum(1) / hits.sum(1)
    result["mAP"] = 100.0 * float(average_precision.mean())
    result["queries"] = int(keep.sum())
    return result


def retrieval_report(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, relevant: torch.Tensor) -> dict:
    """Both directions: ``text_to_image`` (a sentence finds its images: the search tool) and
    ``image_to_text``; ``relevant`` bool ``[N_images, N_texts]``."""
    similarity = image_embeddings @ text_embeddings.T
    text_to_image = ranking_metrics(similarity.T, relevant.T)
    image_to_text = ranking_metrics(similarity, relevant)
    return {
        "text_to_image": text_to_image,
        "image_to_text": image_to_text,
        "mean_recall": sum(d[f"R@{k}"] for d in (text_to_image, image_to_text) for k in RECALL_AT) / 6,
        "images": int(image_embeddings.shape[0]),
        "texts": int(text_embeddings.shape[0]),
    }
