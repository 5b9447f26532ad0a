"""The real PartImageNet_OOD release: its published facts (facts), fetching it (download), reading
its nested zips safely (unpack), and writing the verified canonical copy (prepare)."""
