"""Pure image geometry and face helpers for the editing jobs (inpaint, outpaint, face re-render/restore)."""
