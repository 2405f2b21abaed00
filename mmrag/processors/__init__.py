"""Data processing for the models: tokenizer loading, conversation templates, image processing,
tokenization and collation. Imports only mmrag.common (and third-party packages), never models."""
from mmrag.processors.conversation import ConversationTemplate, get_template, load_templates  # noqa: F401
from mmrag.processors.image_processing import ImageProcessor, open_rgb  # noqa: F401
from mmrag.processors.multimodal_processor import MultimodalProcessor, VisualInputSpec, build_processor  # noqa: F401
from mmrag.processors.tokenization import IGNORE_INDEX, IMAGE_PLACEHOLDER_ID  # noqa: F401
from mmrag.processors.tokenizers import TokenIds, load_tokenizer, token_ids  # noqa: F401
