"""rwpipe's command-line layer: one thin typer command per DVC stage."""
