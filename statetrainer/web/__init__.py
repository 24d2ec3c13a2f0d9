"""The live lifecycle view in the browser (``statetrainer serve``). Torch-free."""
