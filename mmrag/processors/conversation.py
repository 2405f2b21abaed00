"""Conversation templates (data in templates.yaml) rendered into (text, carries_loss) segments."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import yaml

from mmrag.common.errors import UnknownNameError

TEMPLATES_FILE = Path(__file__).with_name("templates.yaml")
Segment = Tuple[str, bool]  # (text, whether the text is a target that carries loss)


@dataclass(frozen=True)
class ConversationTemplate:
    name: str
    system: str
    user: str
    assistant_prefix: str
    answer: str
    eos_after_answer: bool
    turn_separator: str

    def segments(self, turns: Sequence[Dict[str, str]]) -> List[Segment]:
        """Render alternating human/gpt turns (LLaVA `from`/`value` dicts) into segments.

        Every human turn ends with the assistant prefix, so a conversation that ends with a human
        turn is ready for generation. `eos_after_answer`: whether the tokenizer's EOS follows each
        answer (and carries loss: the model learns to stop).
        """
        segments: List[Segment] = [(self.system, False)] if self.system else []
        for i, turn in enumerate(turns):
            role, content = turn["from"], turn["value"]
            if role == "human":
                if i > 0 and self.turn_separator:
                    segments.append((self.turn_separator, False))
                segments.append((self.user.format(content=content) + self.assistant_prefix, False))
            elif role == "gpt":
                segments.append((self.answer.format(content=content), True))
            else:
                raise ValueError(f"conversation turn {i}: role must be 'human' or 'gpt', got {role!r}")
        return segments

    def prompt(self, turns: Sequence[Dict[str, str]]) -> str:
        """The plain text the model sees before it generates (no targets)."""
        return "".join(text for text, _ in self.segments(turns))


def load_templates(path: Path = TEMPLATES_FILE) -> Dict[str, ConversationTemplate]:
    raw = yaml.safe_load(path.read_text())
    return {name: ConversationTemplate(name=name, **fields) for name, fields in raw.items()}


def get_template(name: str, path: Optional[Path] = None) -> ConversationTemplate:
    templates = load_templates(path or TEMPLATES_FILE)
    if name not in templates:
        import difflib

        close = difflib.get_close_matches(name, list(templates), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UnknownNameError(f"unknown conversation template '{name}'{hint} known: {', '.join(sorted(templates))}")
    return templates[name]
