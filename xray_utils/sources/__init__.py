"""Where images come from: the profile's choice (``profile``), the generated demo data (``demo``,
``phantoms``), the paper's datasets (``paper``), the public datasets (``public``), the one
downloader (``download``), the shipped open films (``open_films``) and labelled folders."""
