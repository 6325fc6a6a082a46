# Lines of `endpoint<TAB>mode<TAB>case<TAB>outcome` (the suite's report) to a
# Markdown matrix: one row per case, one column per endpoint and mode.
{
    column = $1 " · " tolower($2)
    if (!(column in seen_column)) { seen_column[column] = 1; columns[++ncolumns] = column }
    if (!($3 in seen_case)) { seen_case[$3] = 1; cases[++ncases] = $3 }
    outcome = $4
    if (outcome == "passed") { cell = "passed"; passed[column]++ }
    else if (outcome == "failed") { cell = "**FAILED**"; failed[column]++ }
    else { sub(/^skipped: needs /, "", outcome); cell = "skipped (" outcome ")"; skipped[column]++ }
    result[$3, column] = cell
}
END {
    print "## Summary"
    print ""
    print "| endpoint · mode | passed | skipped | failed |"
    print "|---|---|---|---|"
    for (c = 1; c <= ncolumns; c++) {
        column = columns[c]
        printf "| %s | %d | %d | %d |\n", column, passed[column], skipped[column], failed[column]
    }
    print ""
    print "## Cases"
    print ""
    header = "| case |"; rule = "|---|"
    for (c = 1; c <= ncolumns; c++) { header = header " " columns[c] " |"; rule = rule "---|" }
    print header
    print rule
    for (k = 1; k <= ncases; k++) {
        row = "| `" cases[k] "` |"
        for (c = 1; c <= ncolumns; c++) {
            cell = ((cases[k], columns[c]) in result) ? result[cases[k], columns[c]] : "not run"
            row = row " " cell " |"
        }
        print row
    }
}
