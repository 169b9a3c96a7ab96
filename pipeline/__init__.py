"""Stage scripts: arguments → declared params → call ``ebm`` → atomic writes."""
