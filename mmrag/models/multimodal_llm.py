"""The one multimodal LLM class: vision tower (+ optional region prefix) -> projector -> causal LM.

Backbones are chosen by config only. The model is an nn.Module and nothing else: text and images
become tensors in `mmrag.processors` (tokenizer, template, image processor, collation), whose
IMAGE_PLACEHOLDER_ID positions the model overwrites with visual features, in order, any number
per sample. Trainable by default: projector, region prefix and LoRA adapters; the vision tower and
the LLM's own weights are frozen.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from omegaconf import OmegaConf
from torch import nn

from mmrag.common.errors import ConfigError
from mmrag.common.paths import require_path
from mmrag.common.registry import MODELS, VISION_TOWERS
from mmrag.models.context_modules import ContextInputs, build_context_module, context_defaults
from mmrag.models.llm import LLM_DEFAULTS, LORA_DEFAULTS, apply_lora, base_causal_lm, load_llm
from mmrag.models.persistence import load_trainable, save_trainable
from mmrag.models.projectors import build_projector, projector_defaults
from mmrag.models.region_prefix import RegionPrefixEncoder
from mmrag.models.vision_tower import build_vision_tower
from mmrag.processors.conversation import get_template
from mmrag.processors.grounding import name_token_ids
from mmrag.processors.multimodal_processor import VisualInputSpec, check_image_placement
from mmrag.processors.tokenization import CONTEXT_PLACEHOLDER_ID, IGNORE_INDEX, IMAGE_PLACEHOLDER_ID
from mmrag.processors.tokenizers import TokenIds, load_tokenizer, token_ids

log = logging.getLogger(__name__)
LOSS_LOGITS = ("targets", "all")  # model.loss_logits
GROUNDING_HEADS = ("output", "input")  # model.grounding_head
MATCH_READS = ("full_names", "first_ids")  # model.match_answer_read
MATCH_SCOPES = ("all_images", "query_image")  # model.match_answer_scope


@MODELS.register("mm_llm")
class MultimodalLLM(nn.Module):
    DEFAULTS: Dict[str, Any] = {
        "arch": "mm_llm",
        "vision_tower": {},  # filled from the chosen tower type's defaults
        "region_prefix": {"enabled": False, "layers": 2, "prefix_len": 10, "num_output_tokens": 2, "region_dim": None},
        "projector": {"type": "mlp2x_gelu"},  # filled from the chosen projector type's defaults
        "context_module": {"type": "none"},   # reads retrieved examples; none: no module
        "llm": LLM_DEFAULTS,
        "lora": LORA_DEFAULTS,
        "conversation_template": "vicuna_v1",
        "image_token": "<image>",
        "image_placement": "as_written",  # as_written | after_text (the processor moves a turn's images after its text)
        "max_txt_len": 512,
        "loss_logits": "targets",  # targets: LM head + cross-entropy at target positions only | all: every position
        "grounding_loss_weight": 0.0,  # > 0: each visual token covered by an object predicts its name (batch cell_targets)
        "grounding_head": "output",    # output: the LM head scores the visual tokens | input: the input embeddings do
        # true: each text token gets, added to its embedding along one learned direction, how strongly some visual
        # token of its sample reads as that token (max over cells of softmax(visual @ input embeddings)); a short
        # path from a question's name to the grid, for grounded visual tokens (grounding_loss_weight > 0)
        "name_match_feature": False,
        # true: a late-fusion term on the output logits. At every position t the logits of the first answer
        # sub-tokens of match_answer_tokens [yes, no] get +d/2 and -d/2, d = a * m_t + b, with m_t the highest
        # name_match of the text tokens at positions <= t of t's own turn (a turn ends with the EOS the
        # template puts after each answer) and a, b learned scalars starting at 0 (so the option starts as
        # the model without it); the same term in the loss and in generate() (a logits processor)
        "match_answer_bias": False,
        "match_answer_tokens": ["Yes", "No"],  # [yes, no] answers, rendered in the template's answer form
        # a COCO instances file (the grounding_boxes one): m reads only its category names, each by its first
        # id's match (the id the grounding loss teaches the cells); null: every text token reads its own id.
        # Without it, or with first_ids, a prompt word that shares a name's first id ("the" of "theskan" in
        # "in the image") sets m for every question on an image holding that object
        "match_answer_names": None,
        # full_names: a name counts where its whole ids stand, from its last token on (causal) | first_ids:
        # every token whose id begins some name
        "match_answer_read": "full_names",
        # d = gain * (a * m + b): Adam moves a, b by about the learning rate per step, so a gain lets a short
        # run reach a logit-sized term
        "match_answer_gain": 1.0,
        # all_images: m reads every image's cells and every name of the turn | query_image: only the LAST
        # image's cells and the names after it. A RAG prompt puts the retrieved image-caption pairs first and
        # the query image last (mmrag.surf.prompts); with all_images a caption's name matching a retrieved
        # image's object (or the query's) sets m, and the retrieved context votes "yes" for any question.
        # The same as all_images on a prompt with one image before its question.
        "match_answer_scope": "all_images",
        "pad_to_square": True,
        "checkpoint": None,  # a folder written by save_trainable(), loaded after building
    }

    @classmethod
    def default_config(cls, user_cfg) -> Dict[str, Any]:
        """DEFAULTS with the chosen tower / projector / context module types' own defaults filled in."""
        tower_type = (user_cfg.get("vision_tower") or {}).get("type", "hf_clip")
        defaults = OmegaConf.create(cls.DEFAULTS)
        defaults.vision_tower = VISION_TOWERS.get(tower_type).default_config()
        defaults.projector = projector_defaults(user_cfg.get("projector"), defaults.projector.type)
        defaults.context_module = context_defaults(user_cfg.get("context_module"), defaults.context_module.type)
        return defaults

    def __init__(self, cfg, token_ids: Optional[TokenIds] = None) -> None:
        """`token_ids`: the tokenizer's vocabulary size (rows of a random LLM's embedding) and its
        pad / eos ids for generation; by default read from `cfg.llm`'s tokenizer folder."""
        super().__init__()
        check_image_placement(cfg.get("image_placement", "as_written"))  # fail before anything is built
        if cfg.get("loss_logits", "targets") not in LOSS_LOGITS:
            raise ConfigError(f"model.loss_logits={cfg.get('loss_logits')!r} is not one of {', '.join(LOSS_LOGITS)}")
        if cfg.get("grounding_head", "output") not in GROUNDING_HEADS:
            raise ConfigError(f"model.grounding_head={cfg.get('grounding_head')!r} is not one of {', '.join(GROUNDING_HEADS)}")
        if float(cfg.get("grounding_loss_weight", 0.0)) < 0:
            raise ConfigError(f"model.grounding_loss_weight={cfg.get('grounding_loss_weight')!r}: expected a weight >= 0")
        self.cfg = cfg
        self.token_ids = token_ids or _token_ids(cfg.llm)
        self.vision_tower = build_vision_tower(OmegaConf.to_container(cfg.vision_tower, resolve=True))
        self.region_prefix = self._build_region_prefix(cfg.region_prefix)
        visual_width = self.vision_tower.hidden_size
        self.llm = load_llm(OmegaConf.to_container(cfg.llm, resolve=True), vocab_size=self.token_ids.vocab_size)
        if cfg.llm.freeze:
            self.llm.requires_grad_(False)
        llm_width = self.llm.config.hidden_size
        self.projector = build_projector(OmegaConf.to_container(cfg.projector, resolve=True), visual_width, llm_width,
                                         self._patch_grid())
        if cfg.lora.enabled:
            self.llm = apply_lora(self.llm, cfg.lora)
        # built last: with the default {type: none} nothing is built and no random number is drawn
        self.context_module = build_context_module(OmegaConf.to_container(cfg.context_module, resolve=True),
                                                   self.num_visual_tokens, llm_width)
        # zero at the start, so a model with the feature begins as the model without it
        self.match_direction = nn.Parameter(torch.zeros(llm_width)) if cfg.get("name_match_feature", False) else None
        self.answer_bias = None  # [a, b] of match_answer_bias
        self.answer_readable = self.answer_names = None
        self.answer_scope = "all_images"
        if cfg.get("match_answer_bias", False):
            self.answer_bias = nn.Parameter(torch.zeros(2))
            tokenizer = load_tokenizer(OmegaConf.to_container(cfg.llm, resolve=True))
            self.register_buffer("answer_sign", _answer_sign(cfg, tokenizer, self.token_ids.vocab_size), persistent=False)
            self.answer_readable, self.answer_names = _answer_reading(cfg, tokenizer, self.token_ids.vocab_size)
            self.answer_gain = float(cfg.get("match_answer_gain", 1.0))
            self.answer_scope = cfg.get("match_answer_scope", "all_images")
            if self.answer_scope not in MATCH_SCOPES:
                raise ConfigError(f"model.match_answer_scope={self.answer_scope!r} is not one of {', '.join(MATCH_SCOPES)}")
            if not self.answer_gain > 0:
                raise ConfigError(f"model.match_answer_gain={cfg.get('match_answer_gain')!r}: expected a number > 0")
        if cfg.checkpoint:
            self.load_trainable(cfg.checkpoint)
        log.info("model %s: %s trainable parameters of %s", cfg.arch, f"{self.num_trainable():,}", f"{self.num_parameters():,}")

    def _build_region_prefix(self, rp) -> Optional[RegionPrefixEncoder]:
        if not rp.enabled:
            return None
        return RegionPrefixEncoder(self.vision_tower, rp.layers, rp.prefix_len, rp.num_output_tokens)

    def _patch_grid(self) -> Optional[int]:
        """Side of the square patch grid the image encoder outputs, or None (CLS / prefix tokens)."""
        tower = self.vision_tower
        if self.region_prefix is not None or tower.select_feature != "patch":
            return None
        return tower.grid  # a ViT's patches per side, a CNN's feature-map side

    # ------------------------------------------------------------------ sizes
    @property
    def num_encoder_tokens(self) -> int:
        """Vision tokens per image before the projector (tower patches, or CLS + region-prefix outputs)."""
        return self.region_prefix.num_tokens if self.region_prefix is not None else self.vision_tower.num_tokens

    @property
    def num_visual_tokens(self) -> int:
        """LLM positions one image fills: what the projector makes of the encoder's tokens."""
        return self.projector.num_tokens(self.num_encoder_tokens)

    def visual_input_spec(self) -> VisualInputSpec:
        """What the processor needs to know of this model's image input."""
        tower = self.vision_tower
        ctx = self.context_module
        return VisualInputSpec(self.num_visual_tokens, tower.image_size, tuple(tower.image_mean), tuple(tower.image_std),
                               ctx.fixed_tokens if ctx is not None else 0, ctx.tokens_per_example if ctx is not None else 0,
                               image_keys=self._feature_cache() is not None)

    def _feature_cache(self):
        """The tower's feature cache when the tower alone makes the visual tokens (no region prefix)."""
        return getattr(self.vision_tower, "cache", None) if self.region_prefix is None else None

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return next(self.projector.parameters()).device

    # ------------------------------------------------------------------ forward
    def encode_images(self, pixel_values: torch.Tensor, regions: Optional[torch.Tensor] = None,
                      image_keys: Optional[List[str]] = None) -> torch.Tensor:
        """[n_images, 3, H, W] -> [n_images, num_visual_tokens, llm_width]. `image_keys` (the processor's
        pixel keys): with a feature cache holding every one of them, the pixels are never read."""
        cache = self._feature_cache() if image_keys is not None else None
        cached = cache.lookup(list(image_keys)) if cache is not None else None
        proj_dtype = next(self.projector.parameters()).dtype
        if cached is not None:
            return self.projector(cached.to(self.device, proj_dtype, non_blocking=True))
        pixel_values = pixel_values.to(self.device)
        if self.region_prefix is not None:
            feats = self.region_prefix(pixel_values, None if regions is None else regions.to(self.device))
        else:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.vision_tower.cfg["freeze"]):
                feats = self.vision_tower(pixel_values)
        return self.projector(feats.to(proj_dtype))

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor, regions=None, context=None,
              image_keys: Optional[List[str]] = None) -> torch.Tensor:
        """Token embeddings with image features (and context-module tokens) written over their placeholders."""
        # decided from shapes and CPU tensors only: a check on GPU values would stall the host every step
        if input_ids.device.type == "cpu":
            self._check_image_positions(input_ids, pixel_values)
        input_ids = input_ids.to(self.device, non_blocking=True)
        placeholders = input_ids == IMAGE_PLACEHOLDER_ID
        embeds = self.llm.get_input_embeddings()(input_ids.masked_fill(input_ids < 0, 0))  # all placeholders
        if pixel_values.shape[0]:
            visual = self.encode_images(pixel_values, regions, image_keys).to(embeds.dtype)
            embeds = embeds.masked_scatter(placeholders.unsqueeze(-1), visual.reshape(-1, visual.shape[-1]))
        if context is not None and self.context_module is not None:
            embeds = self._embed_context(embeds, input_ids, context)
        if self.match_direction is not None and pixel_values.shape[0]:
            embeds = embeds + self.name_match(embeds, input_ids).unsqueeze(-1) * self.match_direction.to(embeds.dtype)
        return embeds

    def name_match(self, embeds: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """[batch, seq]: for each text token, the highest probability any visual token of its row gives that
        token id (softmax of the visual token against the input embeddings, as the grounding loss with
        `grounding_head: input` trains it); 0 at the visual positions. No gradient reaches the visual tokens
        through it: the grounding loss alone decides what they mean."""
        placeholders = input_ids == IMAGE_PLACEHOLDER_ID
        match = self.match_table(embeds, input_ids).gather(1, input_ids.masked_fill(input_ids < 0, 0))
        return match.masked_fill(placeholders, 0.0).to(embeds.dtype)

    def match_table(self, embeds: torch.Tensor, input_ids: torch.Tensor, last_image_only: bool = False) -> torch.Tensor:
        """[batch, vocab] float: the highest probability any visual token of the row (of its last image only,
        with `last_image_only`) gives each id (detached)."""
        placeholders = input_ids == IMAGE_PLACEHOLDER_ID
        if last_image_only:
            placeholders = last_image_cells(input_ids, self.num_visual_tokens)
        table = self.llm.get_input_embeddings().weight
        rows = placeholders.nonzero()[:, 0]
        probs = torch.softmax((embeds[placeholders].detach() @ table.t().detach()).float(), dim=-1)
        best = probs.new_zeros(input_ids.shape[0], table.shape[0])
        return best.scatter_reduce(0, rows.unsqueeze(1).expand_as(probs), probs, reduce="amax")

    def _embed_context(self, embeds: torch.Tensor, input_ids: torch.Tensor, context: Dict[str, Any]) -> torch.Tensor:
        """Runs the context module on the batch's retrieved examples (processor.collate's `context`).
        The module reads its inputs in its own dtype and its tokens are written in the LLM's: the two
        may differ (a bf16 perceiver beside a float32 LLM, or float32 master weights beside a bf16 one),
        and casting here, the one place that calls a context module, serves every registered type."""
        table = self.llm.get_input_embeddings()
        text_ids = context["text_ids"].to(self.device)
        pixels = context["pixel_values"]
        dtype = next((p.dtype for p in self.context_module.parameters() if p.is_floating_point()), embeds.dtype)
        image_tokens = (self.encode_images(pixels) if pixels.shape[0]
                        else embeds.new_zeros(0, self.num_visual_tokens, embeds.shape[-1]))
        inputs = ContextInputs(image_tokens.to(dtype), context["image_counts"].tolist(), table(text_ids).to(dtype),
                               context["text_mask"].to(self.device), context["text_counts"].tolist())
        tokens = torch.cat(list(self.context_module(inputs)), dim=0).to(embeds.dtype)
        slots = (input_ids == CONTEXT_PLACEHOLDER_ID).unsqueeze(-1)
        return embeds.masked_scatter(slots, tokens)

    def _check_image_positions(self, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> None:
        positions, expected = int((input_ids == IMAGE_PLACEHOLDER_ID).sum()), pixel_values.shape[0] * self.num_visual_tokens
        if positions != expected:
            raise ValueError(f"{positions} image positions but {pixel_values.shape[0]} images x "
                             f"{self.num_visual_tokens} tokens")

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Summed token loss and the number of target tokens (the runner normalises over the global batch);
        with `grounding_loss_weight` w > 0 and the batch's `cell_targets`, plus w x the mean grounding
        loss of the covered cells x the target tokens, so the runner's per-token loss gains w x that mean."""
        embeds = self.embed(batch["input_ids"], batch["pixel_values"], batch.get("regions"), batch.get("context"),
                            batch.get("image_keys"))
        out = self._text_loss(embeds, batch, self._answer_shift(embeds, batch))
        weight = float(self.cfg.get("grounding_loss_weight", 0.0))
        if weight > 0 and batch.get("cell_targets") is not None:
            grounding = self.grounding_loss(embeds, batch["input_ids"], batch["cell_targets"])
            if grounding is not None:
                out["loss_sum"] = out["loss_sum"] + weight * grounding * out["n_tokens"].to(grounding.device)
                out["grounding_loss"] = grounding.detach()
        return out

    def grounding_loss(self, embeds: torch.Tensor, input_ids: torch.Tensor,
                       cell_targets: torch.Tensor) -> Optional[torch.Tensor]:
        """Mean over the covered cells of the cross-entropy of each cell's visual token, scored by the LM
        head (`grounding_head: output`) or the input embeddings (`input`) over the vocabulary, against
        its name's ids (`cell_targets` [n_images, cells, width], IGNORE_INDEX-padded; a cell with several
        ids averages their cross-entropies). None when no cell is covered."""
        placeholders = (input_ids == IMAGE_PLACEHOLDER_ID).to(embeds.device)
        visual = embeds[placeholders].reshape(-1, embeds.shape[-1])  # the projected tokens, image by image
        targets = cell_targets.reshape(-1, cell_targets.shape[-1])
        if targets.shape[0] != visual.shape[0]:
            raise ValueError(f"cell_targets hold {targets.shape[0]} cells, the batch {visual.shape[0]} visual tokens")
        covered = torch.nonzero(targets[:, 0] != IGNORE_INDEX).squeeze(1)  # found on the CPU batch
        if not covered.numel():
            return None
        targets = targets.index_select(0, covered).to(embeds.device, non_blocking=True)
        tokens = visual.index_select(0, covered.to(embeds.device, non_blocking=True))
        if self.cfg.get("grounding_head", "output") == "input":
            logits = tokens @ self.llm.get_input_embeddings().weight.t()
        else:
            logits = base_causal_lm(self.llm).get_output_embeddings()(tokens)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        valid = targets != IGNORE_INDEX
        picked = logprobs.gather(1, targets.clamp_min(0)) * valid
        return (-picked.sum(1) / valid.sum(1)).mean()

    def _text_loss(self, embeds: torch.Tensor, batch: Dict[str, torch.Tensor],
                   shift: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """The answer tokens' summed cross-entropy and their count; `shift` [batch, seq]: match_answer_bias's
        d at each position (None: no term)."""
        causal_lm = base_causal_lm(self.llm)
        mask = batch["attention_mask"]  # the CPU batch: checking it costs the GPU no sync
        # no padding: no mask, so attention takes its causal fast path; no KV cache: training never
        # reads one, and building it costs copies (and, compiled, a recompile per layer)
        mask = None if bool(mask.all()) else mask.to(self.device)
        hidden = causal_lm.get_decoder()(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
        labels = batch["labels"][:, 1:]
        if self.cfg.get("loss_logits", "targets") == "all":  # the plain path: [batch, seq, vocab] logits
            logits = causal_lm.get_output_embeddings()(hidden[:, :-1]).float()
            if shift is not None:
                logits = logits + shift[:, :-1, None] * self.answer_sign
            loss_sum = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                   labels.reshape(-1).to(self.device, non_blocking=True),
                                                   ignore_index=IGNORE_INDEX, reduction="sum")
            return {"loss_sum": loss_sum, "n_tokens": torch.tensor(int((labels != IGNORE_INDEX).sum()))}
        # the vocabulary projection only where a loss is taken: prompts are most of a sequence, and
        # [tokens x 32k] logits dominate a small model's step. The target positions are found where
        # the labels are (the collated batch: on the CPU, so finding them costs the GPU no sync).
        flat = torch.nonzero(labels.reshape(-1) != IGNORE_INDEX).squeeze(1)
        targets = labels.reshape(-1)[flat].to(self.device, non_blocking=True)
        width = hidden.shape[-1]
        selected = hidden[:, :-1].reshape(-1, width).index_select(0, flat.to(self.device, non_blocking=True))
        logits = causal_lm.get_output_embeddings()(selected).float()
        if shift is not None:
            picked = shift[:, :-1].reshape(-1).index_select(0, flat.to(self.device, non_blocking=True))
            logits = logits + picked[:, None] * self.answer_sign
        loss_sum = nn.functional.cross_entropy(logits, targets, reduction="sum")
        return {"loss_sum": loss_sum, "n_tokens": torch.tensor(flat.numel())}

    @staticmethod
    def loss_units(batch: Dict[str, torch.Tensor]) -> int:
        """What the loss is averaged over: target tokens (the runner sums this over the global batch)."""
        return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())

    @torch.no_grad()
    def generate(self, batch: Dict[str, torch.Tensor], **generate_kwargs) -> torch.Tensor:
        """New token ids for left-padded prompts (processor.collate(..., generation=True))."""
        embeds = self.embed(batch["input_ids"], batch["pixel_values"], batch.get("regions"), batch.get("context"),
                            batch.get("image_keys"))
        generate_kwargs.setdefault("pad_token_id", self.token_ids.pad_token_id)
        generate_kwargs.setdefault("eos_token_id", self.token_ids.eos_token_id)
        if self.answer_bias is not None:  # the loss's term, continued over the generated tokens
            from transformers import LogitsProcessorList

            processors = LogitsProcessorList(generate_kwargs.pop("logits_processor", None) or [])
            processors.insert(0, _AnswerBiasProcessor(self, embeds, batch))
            generate_kwargs["logits_processor"] = processors
        return self.llm.generate(inputs_embeds=embeds, attention_mask=batch["attention_mask"].to(self.device),
                                 **generate_kwargs)

    # ------------------------------------------------------------------ match_answer_bias
    def answer_match(self, embeds: torch.Tensor, input_ids: torch.Tensor,
                     attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[batch, seq] float: m_t, the highest match read at positions <= t of t's turn (see turn_max)."""
        input_ids = input_ids.to(embeds.device)
        return self.turn_max(self.answer_match_table(embeds, input_ids), input_ids, attention_mask)

    def answer_match_table(self, embeds: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """match_table over the cells match_answer_scope lets m read (every image's, or the last one's)."""
        return self.match_table(embeds, input_ids, last_image_only=self.answer_scope == "query_image")

    def turn_max(self, best: torch.Tensor, input_ids: torch.Tensor,
                 attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """m from the match table `best` [batch, vocab]. What a position reads: without match_answer_names its
        own id's match; with it, the first id's match of a name whose full ids END there (match_answer_read
        full_names; causal: the name is whole only at its last token), or its own id's match if that id begins
        a name (first_ids). A turn ends with the EOS after an answer (the token after an EOS starts the next
        one): in a multi-turn sample (the listing answer, then "Is there a X?") the names of an earlier answer
        would otherwise set m for every later question; the EOS marks the turns alike in a training sample and
        in a generation prompt, which has no labels. Padding, visual and context positions read 0."""
        input_ids = input_ids.to(best.device)
        text = input_ids >= 0
        if self.answer_scope == "query_image":
            text = text & after_last_image(input_ids)
        if attention_mask is not None:
            text = text & attention_mask.to(best.device).bool()
        if self.answer_names is None:
            read = best.gather(1, input_ids.clamp_min(0))
            if self.answer_readable is not None:
                read = read.masked_fill(~self.answer_readable[input_ids.clamp_min(0)], 0.0)
        else:
            read = best.new_zeros(input_ids.shape)
            for k, (first, names) in self.answer_names.items():
                if input_ids.shape[1] < k:
                    continue
                names = names.to(input_ids.device)
                windows = input_ids.unfold(1, k, 1)  # [batch, seq - k + 1, k]
                hit = (windows[:, :, None, :] == names[None, None]).all(-1)  # [batch, starts, names]
                value = best.gather(1, first.to(best.device)[None].expand(best.shape[0], -1))  # [batch, names]
                ends = (hit.float() * value[:, None, :]).amax(-1)
                read[:, k - 1:] = torch.maximum(read[:, k - 1:], ends)
        read = read.masked_fill(~text, 0.0)
        eos = (input_ids == self.token_ids.eos_token_id).long()
        turn = torch.cumsum(eos, dim=1) - eos  # the EOS itself closes its own turn
        seq = input_ids.shape[1]
        causal = torch.ones(seq, seq, dtype=torch.bool, device=best.device).tril()
        same = (turn[:, :, None] == turn[:, None, :]) & causal  # [batch, t, s]: s <= t in t's turn
        return read[:, None, :].masked_fill(~same, 0.0).amax(dim=-1)

    def _answer_shift(self, embeds: torch.Tensor, batch: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        """[batch, seq]: d = a * m + b at each position, or None without match_answer_bias."""
        if self.answer_bias is None:
            return None
        if not batch["pixel_values"].shape[0]:  # no image, no match: m = 0
            return (self.answer_gain * self.answer_bias[1]).expand(batch["input_ids"].shape).to(embeds.device)
        m = self.answer_match(embeds, batch["input_ids"], batch.get("attention_mask"))
        return self.answer_gain * (self.answer_bias[0] * m + self.answer_bias[1])

    # ------------------------------------------------------------------ persistence
    def trainable_state(self) -> Dict[str, torch.Tensor]:
        return {n: p.detach().cpu().contiguous() for n, p in self.named_parameters() if p.requires_grad}

    def save_trainable(self, out_dir: str | Path) -> Path:
        """LoRA adapters in peft's own format (adapter/), every other trainable weight in safetensors."""
        return save_trainable(self, out_dir)

    def load_trainable(self, folder: str | Path) -> None:
        """The weights save_trainable wrote; a corrupt or foreign file is refused naming it."""
        load_trainable(self, folder)


def last_image_cells(input_ids: torch.Tensor, tokens_per_image: int) -> torch.Tensor:
    """[batch, seq] bool: the visual positions of each row's last image (its last `tokens_per_image`
    placeholders; images may stand side by side, so runs of placeholders are not counted)."""
    placeholders = input_ids == IMAGE_PLACEHOLDER_ID
    count = placeholders.long().cumsum(1)
    return placeholders & (count > count[:, -1:] - tokens_per_image)


def after_last_image(input_ids: torch.Tensor) -> torch.Tensor:
    """[batch, seq] bool: the positions after each row's last visual position (every position of a row
    without an image)."""
    placeholders = input_ids == IMAGE_PLACEHOLDER_ID
    count = placeholders.long().cumsum(1)
    return (count == count[:, -1:]) & ~placeholders


def _answer_reading(cfg, tokenizer, vocab_size: int):
    """(readable [vocab] bool or None, names {length: (first ids [n], ids [n, length])} or None) for
    match_answer_names / match_answer_read: first_ids reads the ids that begin a name (the words that share a
    name's first id, "the" of "theskan" in "in the image", read too); full_names only whole names."""
    path = cfg.get("match_answer_names")
    mode = cfg.get("match_answer_read", "full_names")
    if mode not in MATCH_READS:
        raise ConfigError(f"model.match_answer_read={mode!r} is not one of {', '.join(MATCH_READS)}")
    if not path:
        return None, None
    key = "model.match_answer_names"
    file = require_path(key, path, "COCO instances file")
    try:
        names = [c["name"] for c in json.loads(file.read_text())["categories"]]
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{key}={path}: expected a COCO instances file with categories[].name ({err})") from None
    if not names:
        raise ConfigError(f"{key}={path}: no categories")
    ids = [name_token_ids(tokenizer, name, "all") for name in names]
    if mode == "first_ids":
        readable = torch.zeros(vocab_size, dtype=torch.bool)
        readable[[x[0] for x in ids]] = True
        return readable, None
    by_length: Dict[int, List[List[int]]] = {}
    for x in ids:
        by_length.setdefault(len(x), []).append(x)
    return None, {k: (torch.tensor([x[0] for x in group]), torch.tensor(group)) for k, group in sorted(by_length.items())}


def _answer_sign(cfg, tokenizer, vocab_size: int) -> torch.Tensor:
    """[vocab]: +1/2 at the first sub-token of the yes answer, -1/2 at the no answer's, 0 elsewhere. Each
    answer is tokenised as the template renders an answer segment, so the ids are the ones the loss trains."""
    key = "model.match_answer_tokens"
    answers = cfg.get("match_answer_tokens")
    answers = list(answers) if answers is not None and not isinstance(answers, str) else answers
    if not isinstance(answers, list) or len(answers) != 2 or not all(isinstance(a, str) and a.strip() for a in answers):
        raise ConfigError(f"{key}={answers!r}: expected two non-empty strings [yes answer, no answer]")
    template = get_template(cfg.get("conversation_template", "vicuna_v1"))
    if not template.eos_after_answer:
        raise ConfigError(f"model.match_answer_bias: template {template.name!r} puts no EOS after an answer, "
                          "which is what ends a turn for the match")
    first = []
    for answer in answers:
        ids = tokenizer(template.answer.format(content=answer), add_special_tokens=False)["input_ids"]
        if not ids or not 0 <= ids[0] < vocab_size:
            raise ConfigError(f"{key}: {answer!r} has no first token id in the vocabulary")
        piece = tokenizer.convert_ids_to_tokens(ids[0]).replace("\u2581", "").replace("\u0120", "").strip()
        if not piece or not answer.strip().startswith(piece) or not piece[0].isalnum():
            raise ConfigError(f"{key}: {answer!r} does not begin with a token of its own (first piece "
                              f"{tokenizer.convert_ids_to_tokens(ids[0])!r}); give a word the tokenizer starts with one")
        first.append(ids[0])
    if first[0] == first[1]:
        raise ConfigError(f"{key}={answers!r}: both answers begin with the same token id {first[0]}")
    sign = torch.zeros(vocab_size)
    sign[first[0]], sign[first[1]] = 0.5, -0.5
    return sign


class _AnswerBiasProcessor:
    """generate()'s share of match_answer_bias: the scores of each step get the d the forward gives that
    position, m recomputed by turn_max over the prompt and the tokens generated so far."""

    def __init__(self, model: "MultimodalLLM", embeds: torch.Tensor, batch: Dict[str, torch.Tensor]) -> None:
        self.model = model
        self.input_ids = batch["input_ids"].to(embeds.device)
        self.mask = batch["attention_mask"].to(embeds.device)
        self.best = model.answer_match_table(embeds, self.input_ids)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        # generate() with inputs_embeds alone hands the processors the generated tokens only (no prompt ids);
        # with beams each prompt row is repeated beam-count times, in order
        source = torch.arange(scores.shape[0], device=scores.device) // (scores.shape[0] // self.input_ids.shape[0])
        new = input_ids.to(self.input_ids.device)
        ids = torch.cat([self.input_ids[source], new], dim=1)
        mask = torch.cat([self.mask[source], torch.ones_like(new)], dim=1)
        m = self.model.turn_max(self.best[source], ids, mask)[:, -1].to(scores.device)
        a, b = self.model.answer_bias[0].float(), self.model.answer_bias[1].float()
        d = self.model.answer_gain * (a * m + b)
        return scores + d[:, None] * self.model.answer_sign.to(scores.dtype)


def _token_ids(llm_cfg) -> TokenIds:
    return token_ids(OmegaConf.to_container(llm_cfg, resolve=True) if OmegaConf.is_config(llm_cfg) else llm_cfg)
