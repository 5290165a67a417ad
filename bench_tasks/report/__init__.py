"""Report generation: tables and figures from results/ only."""
