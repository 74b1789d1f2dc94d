#!/usr/bin/env python3
"""Run QEMU 7.2's scripts/analyze-migration.py with what it lacks for the fixture streams.

    python3 tools/analyze-migration-ext.py PATH/TO/analyze-migration.py [-f FILE | -d desc -f FILE | -x -f FILE]

The QEMU script is not part of this repository (see tests/fixtures/README-qemu-7.2.md for where to get it).
This wrapper loads its definitions, replaces the RAM section reader and adds one for the 'block' section, then
runs the script's own command line. Device sections, the vmdesc and the JSON output stay QEMU's. Changes:

  * XBZRLE pages (RAM_SAVE_FLAG_XBZRLE) are decoded against the page as last received (7.2 rejects them);
  * ZERO pages are written by -x even when a page was sent with data before (7.2 skips fill byte 0, so a page
    re-sent as ZERO keeps stale data);
  * the 'block' section (block migration) is read: -f lists data/zero chunks per device, -x writes
    block-DEVICE.img;
  * the RAM section's dump adds "page records (ext)": PAGE/ZERO/XBZRLE counts.
"""
import collections
import os
import sys

RAM_ZERO = 0x02
RAM_MEM_SIZE = 0x04
RAM_PAGE = 0x08
RAM_EOS = 0x10
RAM_CONTINUE = 0x20
RAM_XBZRLE = 0x40
RAM_HOOK = 0x80
XBZRLE_ENCODING = 0x01

BLK_DEVICE_BLOCK = 0x01
BLK_EOS = 0x02
BLK_PROGRESS = 0x04
BLK_ZERO_BLOCK = 0x08
BLK_CHUNK = 1 << 20  # block migration sends whole 1 MiB chunks
SECTOR_BITS = 9


def uleb128(buf, at):
    value = shift = 0
    while True:
        b = buf[at]
        at += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, at


def apply_xbzrle(page, delta):
    """Apply an XBZRLE delta (alternating unchanged-run / changed-run lengths, ULEB128, changed bytes inline)."""
    at = pos = 0
    while at < len(delta):
        unchanged, at = uleb128(delta, at)
        pos += unchanged
        if at >= len(delta):
            break
        changed, at = uleb128(delta, at)
        if pos + changed > len(page) or at + changed > len(delta):
            raise Exception("XBZRLE delta runs past the page")
        page[pos:pos + changed] = delta[at:at + changed]
        pos += changed
        at += changed


def make_ram_section(base):
    class ExtRamSection(base):
        """RAM reader with XBZRLE and ZERO pages always written (-x); counts records."""

        def __init__(self, file, version_id, ramargs, section_key):
            super().__init__(file, version_id, ramargs, section_key)
            if self.dump_memory:
                raise Exception("-m is not supported by analyze-migration-ext.py")
            self.counts = collections.OrderedDict()
            self.data['page records (ext)'] = self.counts

        def count(self, kind):
            self.counts[kind] = self.counts.get(kind, 0) + 1

        def block_name(self, flags):
            if not flags & RAM_CONTINUE:
                self.name = self.file.readstr()
            return self.name

        def write_page(self, addr, data):
            f = self.files[self.name]
            f.seek(addr)
            f.write(data)

        def read(self):
            page_size = self.TARGET_PAGE_SIZE
            while True:
                word = self.file.read64()
                flags = word & (page_size - 1)
                addr = word & ~(page_size - 1)
                if flags & RAM_MEM_SIZE:
                    self.read_mem_size()
                elif flags & RAM_ZERO:
                    self.block_name(flags)
                    fill = self.file.read8() & 0xFF
                    self.count('ZERO')
                    if self.write_memory:
                        self.write_page(addr, bytes([fill]) * page_size)
                elif flags & RAM_PAGE:
                    self.block_name(flags)
                    self.count('PAGE')
                    if self.write_memory:
                        self.write_page(addr, self.file.readvar(size=page_size))
                    else:
                        self.file.file.seek(page_size, 1)
                elif flags & RAM_XBZRLE:
                    self.block_name(flags)
                    encoding = self.file.read8() & 0xFF
                    if encoding != XBZRLE_ENCODING:
                        raise Exception("unknown XBZRLE encoding flag 0x%x" % encoding)
                    length = self.file.read16() & 0xFFFF
                    delta = self.file.readvar(size=length) if length else b""
                    self.count('XBZRLE')
                    if self.write_memory:
                        f = self.files[self.name]
                        f.seek(addr)
                        page = bytearray(f.read(page_size).ljust(page_size, b"\0"))
                        apply_xbzrle(page, delta)
                        self.write_page(addr, bytes(page))
                elif flags & RAM_HOOK:
                    raise Exception("RAM hooks don't make sense with files")
                known = RAM_MEM_SIZE | RAM_ZERO | RAM_PAGE | RAM_XBZRLE | RAM_CONTINUE | RAM_EOS
                if flags & ~known:
                    raise Exception("Unknown RAM flags: %x" % flags)
                if flags & RAM_EOS:
                    return

        def read_mem_size(self):
            # The block list ends where the next record's address (first byte 0) begins.
            while True:
                namelen = self.file.read8()
                if namelen == 0:
                    self.file.file.seek(-1, 1)
                    return
                self.name = self.file.readstr(len=namelen)
                length = self.file.read64()
                self.sizeinfo[self.name] = '0x%016x' % length
                if self.write_memory:
                    print(self.name)
                    path = './' + self.name
                    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
                    f = open(path, "w+b")
                    f.truncate(length)
                    self.files[self.name] = f

    return ExtRamSection


class BlockSection(object):
    """The 'block' section of block migration: be64 sector<<9|flags records until EOS."""

    def __init__(self, file, version_id, ramargs, section_key):
        if version_id != 1:
            raise Exception("Unknown block version %d" % version_id)
        self.file = file
        self.section_key = section_key
        self.write_memory = bool(ramargs and ramargs.get('write_memory'))
        self.data = collections.OrderedDict()
        self.data['progress records'] = 0
        self.images = {}

    def read(self):
        while True:
            word = self.file.read64()
            flags = word & ((1 << SECTOR_BITS) - 1)
            sector = word >> SECTOR_BITS
            if flags & BLK_DEVICE_BLOCK:
                name = self.file.readstr()
                dev = self.data.setdefault(name, collections.OrderedDict([('data_chunks', 0), ('zero_chunks', 0)]))
                if flags & BLK_ZERO_BLOCK:
                    dev['zero_chunks'] += 1
                    chunk = bytes(BLK_CHUNK)
                else:
                    dev['data_chunks'] += 1
                    chunk = self.file.readvar(size=BLK_CHUNK)
                if self.write_memory:
                    self.image(name).seek(sector << SECTOR_BITS)
                    self.image(name).write(chunk)
            elif flags & BLK_PROGRESS:
                self.data['progress records'] += 1
            if flags & ~(BLK_DEVICE_BLOCK | BLK_ZERO_BLOCK | BLK_PROGRESS | BLK_EOS):
                raise Exception("Unknown block flags: %x" % flags)
            if flags & BLK_EOS:
                return

    def image(self, name):
        if name not in self.images:
            print("block-%s.img" % name)
            self.images[name] = open("block-%s.img" % name, "w+b")
        return self.images[name]

    def getDict(self):
        return self.data

    def __del__(self):
        for f in self.images.values():
            f.close()


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    script = sys.argv[1]
    with open(script) as f:
        source = f.read()
    cut = source.find("\nparser = argparse.ArgumentParser()")
    if cut < 0 or "class RamSection" not in source or "class MigrationDump" not in source:
        sys.exit("%s does not look like QEMU 7.2's analyze-migration.py" % script)
    ns = {'__name__': 'analyze_migration', '__file__': script}
    exec(compile(source[:cut], script, 'exec'), ns)
    ns['RamSection'] = make_ram_section(ns['RamSection'])
    dump_init = ns['MigrationDump'].__init__

    def init_with_block(self, filename):
        dump_init(self, filename)
        self.section_classes[('block', 0)] = [BlockSection, None]

    def read_with_block_args(self, desc_only=False, dump_memory=False, write_memory=False):
        self.section_classes[('block', 0)][1] = {'write_memory': write_memory}
        return dump_read(self, desc_only=desc_only, dump_memory=dump_memory, write_memory=write_memory)

    dump_read = ns['MigrationDump'].read
    ns['MigrationDump'].__init__ = init_with_block
    ns['MigrationDump'].read = read_with_block_args
    sys.argv = [script] + sys.argv[2:]
    exec(compile(source[cut:], script, 'exec'), ns)


if __name__ == '__main__':
    main()
