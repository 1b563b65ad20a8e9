"""Qt-free logic of the ReaderStudy module (tested with pytest against slicer-core's MRML).

* :mod:`.timer` - active reading time that pauses;
* :mod:`.session` - one reader working through their schedule (open DB, next read, answers, drafts, submit);
* :mod:`.scene` - MRML: load only the volumes a read allows, neutrally named; lesion axes from line markups.
"""
