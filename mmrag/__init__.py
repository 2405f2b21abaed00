"""mmrag: multimodal retrieval-augmented LLMs (GeMKR, SURf, CaMML, DataEngine, LRV) in one codebase."""
