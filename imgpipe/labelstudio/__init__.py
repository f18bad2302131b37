"""Label Studio: reading exports (:mod:`.read`) and writing import files (:mod:`.write`)."""
