"""Command-line entry points: each module's `main(argv=None)` parses arguments and calls the package
(mmrag.pipelines, mmrag.surf, mmrag.retrieval, ...); no logic lives here. Console scripts
`mmrag-<name>` and the thin wrappers in data_process/ and scripts/ call them."""
