"""Editor plugins for sdbridge: a shared client (`plugins.common`) plus thin Krita/GIMP adapters."""
