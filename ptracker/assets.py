"""The third-party front-end files ptracker serves, from npm (package.json, `npm ci`).

Each npm package is served as static/vendor/<package>/ from one of its folders. A
checkout serves that folder straight from node_modules (ptracker.settings); a wheel
carries copies of the files listed here and the package's license, made when it is
built (setup.py), so pages must use only listed files. Plain data without imports:
the build reads this file before anything is installed.
"""

# npm package: (its folder served as static/vendor/<package>/, the files pages use)
NPM_ASSETS: dict[str, tuple[str, list[str]]] = {
    "chart.js": ("dist", ["chart.umd.min.js"]),
    "chartjs-adapter-date-fns": ("dist", ["chartjs-adapter-date-fns.bundle.min.js"]),
    "chartjs-plugin-zoom": ("dist", ["chartjs-plugin-zoom.min.js"]),
    "hammerjs": ("", ["hammer.min.js"]),  # the zoom plugin's touch gestures
    # drf-spectacular's API docs page (SPECTACULAR_SETTINGS["SWAGGER_UI_DIST"])
    "swagger-ui-dist": (
        "",
        [
            "swagger-ui.css",
            "swagger-ui-bundle.js",
            "swagger-ui-standalone-preset.js",
            "favicon-32x32.png",
        ],
    ),
}
