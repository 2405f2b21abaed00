"""Where the SURf pipeline reads and writes (repository-relative): shared by the pipeline and its report."""
WORLD = "dataset/world_small"
OUT = "output/surf_world_small"
BASE_OUT = "output/llava_tiny_world"
BASE_CKPT = f"{BASE_OUT}/final"
SURF_CKPT = f"{OUT}/surf_model/final"
YESNO = f"{WORLD}/llava/yesno_{{split}}.json"
INSTANCES_TRAIN = f"{WORLD}/annotations/instances_train.json"   # COCO boxes of the training images
RAG_K = 2   # retrieved items in the POPE RAG rows' prompts
POPE_SPLITS = ("random", "popular", "adversarial")
