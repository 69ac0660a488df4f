// No native extractor: msgpackr checks for a falsy export and keeps its JavaScript decoder.
module.exports = null;
