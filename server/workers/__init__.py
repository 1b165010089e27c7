"""Workers: where jobs run. One per device in this process, or one per GPU of a Ray cluster."""
