"""Sample data of the offline demo source, and the script that generates it."""
