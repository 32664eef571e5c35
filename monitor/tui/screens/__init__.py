"""One screen per module: main, drill-down (groups), group rows, custom query rows, help."""
