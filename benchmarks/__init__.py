"""Speed measured side by side (``make bench``); importable so that the book's run-it-yourself chapter and the
tests call the same code as the command line."""
